"""The admin API's Prometheus metrics (``codexpool_admin_*``); labels are small closed sets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.auth_failures = Counter(
            "codexpool_admin_auth_failures_total",
            "Refused authentications, by reason (missing_token, invalid_token, rate_limited)",
            ["reason"],
            registry=registry,
        )
        self.changes = Counter(
            "codexpool_admin_changes_total",
            "Audited actions, by action (pool.updated, provider.register, ...)",
            ["action"],
            registry=registry,
        )
        self.usage_refreshes = Counter(
            "codexpool_admin_usage_refreshes_total",
            "Per-provider quota reads of Refresh Live State, by result (ok, error)",
            ["result"],
            registry=registry,
        )
        self.token_refreshes = Counter(
            "codexpool_admin_token_refreshes_total",
            "Access-token refreshes of Refresh Live State, by outcome "
            "(refreshed, adopted, refused, failed, timeout)",
            ["outcome"],
            registry=registry,
        )
