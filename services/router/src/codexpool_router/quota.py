"""Quota snapshots from the ``x-codex-*`` headers every upstream answer carries (protocol 5.1)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from codexpool_shared.store import QuotaSnapshot, QuotaWindow

_TRUE = {"true", "1"}


def _float(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _window(headers: Mapping[str, str], which: str, now: float) -> QuotaWindow | None:
    prefix = f"x-codex-{which}-"
    used = _float(headers, prefix + "used-percent")
    if used is None:
        return None
    minutes = _float(headers, prefix + "window-minutes")
    resets = _float(headers, prefix + "reset-at")
    if resets is None:
        after = _float(headers, prefix + "reset-after-seconds")
        resets = now + after if after is not None else None
    if used == 0 and not minutes and resets is None:
        return None
    return QuotaWindow(
        used_percent=used,
        window_minutes=int(minutes) if minutes else None,
        resets_at=int(resets) if resets is not None else None,
    )


def _flag(headers: Mapping[str, str], name: str) -> bool | None:
    value = headers.get(name)
    return None if value is None else value.strip().lower() in _TRUE


def snapshot_from_headers(
    headers: Mapping[str, str], now: float | None = None
) -> QuotaSnapshot | None:
    """The snapshot in ``headers`` (received at ``now``, epoch s), or ``None`` when they carry
    none; ``now`` is also the snapshot's observation time."""
    if "x-codex-primary-used-percent" not in headers:
        return None
    now = time.time() if now is None else now
    return QuotaSnapshot(
        primary=_window(headers, "primary", now),
        secondary=_window(headers, "secondary", now),
        plan_type=headers.get("x-codex-plan-type") or None,
        credits_has_credits=_flag(headers, "x-codex-credits-has-credits"),
        credits_unlimited=_flag(headers, "x-codex-credits-unlimited"),
        credits_balance=headers.get("x-codex-credits-balance") or None,
        observed_at_ms=int(now * 1000),
    )


def exhausted_reset(snapshot: QuotaSnapshot | None) -> int | None:
    """The latest reset (epoch s) among windows at 100 %, for a 429 that names no reset."""
    if snapshot is None:
        return None
    resets = [
        w.resets_at
        for w in (snapshot.primary, snapshot.secondary)
        if w is not None and w.used_percent >= 100 and w.resets_at
    ]
    return max(resets) if resets else None
