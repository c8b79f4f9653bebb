"""The pool's usage document, served by ``GET /v1/usage`` and ``GET /backend-api/wham/usage``.

It has the shape of the upstream's ``/wham/usage`` (docs/reference/codex-backend-protocol.md
section 6), but describes the whole pool: a window's ``used_percent`` is the mean over the
active members (an account cooling down for quota counts as 100 %), its reset is the earliest
member reset, and ``limit_reached`` is true only when no member has quota left. ``providers``
lists each member.
"""

from __future__ import annotations

import math
import time
from typing import Any

from codexpool_shared.store import LiveState, Provider


def _window(lives: list[LiveState], which: str, now: float) -> dict[str, Any] | None:
    used: list[float] = []
    resets: list[int] = []
    minutes: list[int] = []
    for live in lives:
        quota = live.quota
        window = getattr(quota, which) if quota else None
        cooling = live.cooldown_reason == "usage_limit" and live.cooldown_until_ms > now * 1000
        if window is None and not cooling:
            used.append(0.0)
            continue
        used.append(min(100.0, window.used_percent) if window else 100.0)
        if window is not None and window.resets_at:
            resets.append(window.resets_at)
        if window is not None and window.window_minutes:
            minutes.append(window.window_minutes)
    if not used or (not resets and not minutes and not any(used)):
        return None
    reset_at = min(resets) if resets else None
    return {
        "used_percent": round(sum(used) / len(used)),
        "limit_window_seconds": max(minutes) * 60 if minutes else None,
        "reset_after_seconds": max(0, math.ceil(reset_at - now)) if reset_at else None,
        "reset_at": reset_at,
    }


def usage_document(providers: list[Provider], lives: list[LiveState]) -> dict[str, Any]:
    now = time.time()
    active = [(p, lv) for p, lv in zip(providers, lives, strict=True) if p.status == "active"]
    live_active = [lv for _, lv in active]

    def exhausted(live: LiveState) -> bool:
        if live.cooldown_reason == "usage_limit" and live.cooldown_until_ms > now * 1000:
            return True
        q = live.quota
        return bool(q and any(w and w.used_percent >= 100 for w in (q.primary, q.secondary)))

    limit_reached = all(exhausted(lv) for lv in live_active)
    plans = {p.plan_type for p, _ in active if p.plan_type}
    return {
        "plan_type": plans.pop() if len(plans) == 1 else "pool",
        "rate_limit": {
            "allowed": not limit_reached,
            "limit_reached": limit_reached,
            "primary_window": _window(live_active, "primary", now),
            "secondary_window": _window(live_active, "secondary", now),
        },
        "credits": None,
        "additional_rate_limits": [],
        "rate_limit_reached_type": "rate_limit_reached" if limit_reached else None,
        "providers": [
            {
                "provider": p.name,
                "status": p.status,
                "plan_type": p.plan_type,
                "quota": lv.quota.model_dump() if lv.quota else None,
                "cooldown_until_ms": lv.cooldown_until_ms or None,
                "cooldown_reason": lv.cooldown_reason,
            }
            for p, lv in zip(providers, lives, strict=True)
        ],
    }
