"""The registry of Codex Pool's own span and log attributes (docs/STYLE.md point 15).

Every custom attribute carries the ``codexpool.`` prefix and is named here, once; standard
semantic-convention attributes (``http.*``, ``messaging.*``, ``gen_ai.*``) are not repeated.
Values are opaque ids and small enums, never tokens, emails or request bodies.
"""

from __future__ import annotations

from typing import Final

PROVIDER: Final = "codexpool.provider"
"""The provider (account) name an attempt or request was served by."""

AGENT_ID: Final = "codexpool.agent_id"
"""The agent whose key authenticated the request."""

ATTEMPT: Final = "codexpool.attempt"
"""1-based number of the upstream attempt within one request."""

OUTCOME: Final = "codexpool.outcome"
"""Outcome class of an attempt or request (success, quota, auth, server_error, ...)."""

STRATEGY: Final = "codexpool.strategy"
"""The pool's routing strategy: round-robin, primary-first or quota-aware."""

REQUEST_ID: Final = "codexpool.request_id"
"""The ``x-request-id`` answered to the client."""

FALLBACK: Final = "codexpool.fallback"
"""Whether this attempt follows a failed attempt on another provider."""

ALL: Final = frozenset({PROVIDER, AGENT_ID, ATTEMPT, OUTCOME, STRATEGY, REQUEST_ID, FALLBACK})
"""Every registered attribute name."""
