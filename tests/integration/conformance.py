"""What the schemathesis conformance tests share: every check, and the hypothesis settings."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

# `--checks all`: every registered check, named explicitly so a changed default cannot narrow it.
load_all_checks()
ALL_CHECKS = [check for check in CHECKS.get_all() if not isinstance(check, type)]

bounded = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,
)
"""Few examples per operation, the same ones every run (no flake from a new draw)."""
