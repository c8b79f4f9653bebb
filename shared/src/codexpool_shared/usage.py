"""The upstream's usage document (``/wham/usage``) as a quota snapshot.

The endpoint and its document: docs/reference/codex-backend-protocol.md section 6. Both readers
share this parser: the admin API's Refresh Live State and the router's poll of members cooling
down for quota.
"""

from __future__ import annotations

import math
from typing import Any

from codexpool_shared.store.live import QuotaSnapshot, QuotaWindow


def _window(raw: object) -> QuotaWindow | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("used_percent"), int | float):
        return None
    seconds = raw.get("limit_window_seconds")
    resets_at = raw.get("reset_at")
    return QuotaWindow(
        used_percent=float(raw["used_percent"]),
        # Codex converts the window to minutes rounding up; so do we, to show the same figure.
        window_minutes=math.ceil(seconds / 60) if isinstance(seconds, int | float) else None,
        resets_at=int(resets_at) if isinstance(resets_at, int | float) else None,
    )


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_usage(doc: dict[str, Any], *, observed_at_ms: int) -> QuotaSnapshot:
    """The snapshot ``doc`` reports, observed at ``observed_at_ms`` (when its answer arrived)."""
    limits, credits = _object(doc.get("rate_limit")), _object(doc.get("credits"))
    plan = doc.get("plan_type")
    balance = credits.get("balance")
    has_credits, unlimited = credits.get("has_credits"), credits.get("unlimited")
    return QuotaSnapshot(
        primary=_window(limits.get("primary_window")),
        secondary=_window(limits.get("secondary_window")),
        plan_type=plan if isinstance(plan, str) else None,
        credits_has_credits=has_credits if isinstance(has_credits, bool) else None,
        credits_unlimited=unlimited if isinstance(unlimited, bool) else None,
        credits_balance=str(balance) if isinstance(balance, str | int | float) else None,
        observed_at_ms=observed_at_ms,
    )
