"""The pool page's runway: the admin API's forecast in one sentence and per-member bars, and the
what-if replay's answer beside actual."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from codexpool_ui.charts import QuotaBar, quota_bar
from codexpool_ui.formatting import clock_time, parse_time, span


@dataclass(frozen=True, slots=True)
class RunwayRow:
    provider: str
    window: str
    bar: QuotaBar
    text: str


def _when(value: Any, now: datetime) -> str | None:
    at = parse_time(value)
    if at is None:
        return None
    return f"{clock_time(at)} (in {span((at - now).total_seconds())})"


def runway_sentence(forecast: Mapping[str, Any] | None, now: datetime | None = None) -> str:
    """The pool's runway in words; says so when the data is too short for a figure."""
    now = now or datetime.now(UTC)
    pool = (forecast or {}).get("pool") or {}
    runs_dry = _when(pool.get("exhausts_at"), now)
    if runs_dry is None:
        return "Not enough quota history yet to forecast when the pool runs out."
    window = pool.get("limited_by") or "quota"
    if pool.get("before_reset"):
        return (
            f"At the current rate the pool runs out of {window} quota at {runs_dry}, "
            "before any member's window resets."
        )
    return f"At the current rate the pool runs out of {window} quota at {runs_dry}, after resets."


def runway_rows(forecast: Mapping[str, Any] | None, now: datetime | None = None) -> list[RunwayRow]:
    now = now or datetime.now(UTC)
    rows = []
    for r in (forecast or {}).get("providers") or []:
        used = float(r.get("used_percent") or 0)
        burn = r.get("burn_percent_per_hour")
        parts = [f"{used:.0f} % used"]
        parts.append("rate unknown" if burn is None else f"{burn:.1f} %/h")
        if (exhausts := _when(r.get("exhausts_at"), now)) is not None:
            parts.append(f"100 % at {exhausts}")
        if (resets := _when(r.get("resets_at"), now)) is not None:
            parts.append(f"resets {resets}")
        label = f"{r['provider']} {r['window']}: {used:.0f} %"
        rows.append(RunwayRow(r["provider"], r["window"], quota_bar(used, label), ", ".join(parts)))
    return rows
