"""The geometry of the per-provider timeline and the quota bars; ``_charts.html`` draws them as
SVG (no chart library, no CDN).

Colours come from classes styled by the UI's stylesheet, because the page's Content Security
Policy allows no inline styles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codexpool_ui.formatting import clock_time, parse_time

BAR_W = 3
HEIGHT = 36
_PLOT_H = HEIGHT - 4


@dataclass(frozen=True, slots=True)
class Bar:
    """One minute's stacked bar: successes below, failures above, a tick for fallbacks in."""

    x: int
    ok_h: float
    failed_h: float
    fallback: bool
    title: str


@dataclass(frozen=True, slots=True)
class Timeline:
    provider: str
    width: int
    label: str
    bars: list[Bar]
    height: int = HEIGHT
    bar_w: int = BAR_W


@dataclass(frozen=True, slots=True)
class QuotaBar:
    """A 0-100 % bar; ``level`` turns amber from 70 % and red from 90 %."""

    used: float
    level: str
    label: str


def _count(point: Mapping[str, Any], field: str) -> int:
    value = point.get(field, 0)
    return value if isinstance(value, int) and value > 0 else 0


def timeline(points: Sequence[Mapping[str, Any]], provider: str) -> Timeline:
    """One bar per bucket that saw requests, scaled to the busiest bucket."""
    peak = max((_count(p, "requests") for p in points), default=0) or 1
    totals = {f: sum(_count(p, f) for p in points) for f in ("requests", "failures", "fallbacks")}
    bars = []
    for i, point in enumerate(points):
        requests = _count(point, "requests")
        if not requests:
            continue
        ok, failed, fallbacks = (_count(point, f) for f in ("successes", "failures", "fallbacks"))
        when = parse_time(point.get("t"))
        title = (
            f"{clock_time(when) if when else ''} {requests} requests, {ok} ok, {failed} failed, "
            f"{fallbacks} fallbacks in"
        ).strip()
        bars.append(
            Bar(
                x=i * BAR_W,
                ok_h=ok / peak * _PLOT_H,
                failed_h=failed / peak * _PLOT_H,
                fallback=fallbacks > 0,
                title=title,
            )
        )
    label = (
        f"Timeline of {provider}, last {len(points)} minutes: {totals['requests']} requests, "
        f"{totals['failures']} failed, {totals['fallbacks']} fallbacks in"
    )
    return Timeline(provider=provider, width=max(len(points), 1) * BAR_W, label=label, bars=bars)


def quota_bar(used_percent: float, label: str) -> QuotaBar:
    used = min(max(used_percent, 0.0), 100.0)
    level = "crit" if used >= 90 else "warn" if used >= 70 else "ok"
    return QuotaBar(used=used, level=level, label=label)
