"""The 28-day usage chart: hourly requests (answered and failed) above hourly tokens (input and
output), from a usage-history document of the admin API; ``_usage.html`` draws it as SVG.

Only hours that saw traffic get a bar (and a tooltip), so a quiet month costs a few elements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codexpool_ui.admin import AdminApiError, JsonObject
from codexpool_ui.formatting import parse_time

BAND_H = 40
"""Height of each band (requests, tokens); the chart is two bands and a gap."""
GAP = 4


@dataclass(frozen=True, slots=True)
class HourBar:
    x: int
    low_h: float
    """Answered requests, or input tokens: the lower part of the bar."""
    high_h: float
    """Failed requests, or output tokens: stacked on top."""
    title: str


@dataclass(frozen=True, slots=True)
class UsageChart:
    name: str
    """What the chart is of (an agent id or a provider name): its test id and label."""
    hours: int
    requests: int
    input_tokens: int
    output_tokens: int
    label: str
    request_bars: list[HourBar]
    token_bars: list[HourBar]
    band_h: int = BAND_H
    gap: int = GAP

    @property
    def height(self) -> int:
        return 2 * self.band_h + self.gap

    @property
    def days(self) -> int:
        return max(1, self.hours // 24)


def _count(point: Mapping[str, Any], field: str) -> int:
    value = point.get(field, 0)
    return value if isinstance(value, int) and value > 0 else 0


def _when(point: Mapping[str, Any]) -> str:
    when = parse_time(point.get("t"))
    return when.strftime("%Y-%m-%d %H:00 UTC") if when else ""


def usage_chart(history: Mapping[str, Any], name: str) -> UsageChart:
    """The chart of ``history``'s ``total`` points, each band scaled to its busiest hour."""
    raw = history.get("total")
    points: Sequence[Mapping[str, Any]] = (
        [p for p in raw if isinstance(p, Mapping)] if isinstance(raw, list) else []
    )
    peak_requests = max((_count(p, "requests") for p in points), default=0) or 1
    peak_tokens = (
        max((_count(p, "input_tokens") + _count(p, "output_tokens") for p in points), default=0)
        or 1
    )
    request_bars, token_bars = [], []
    for x, point in enumerate(points):
        requests = _count(point, "requests")
        if not requests:
            continue
        failed = _count(point, "failures")
        tokens_in, tokens_out = _count(point, "input_tokens"), _count(point, "output_tokens")
        when = _when(point)
        request_bars.append(
            HourBar(
                x=x,
                low_h=(requests - failed) / peak_requests * BAND_H,
                high_h=failed / peak_requests * BAND_H,
                title=f"{when}: {requests} requests, {failed} failed",
            )
        )
        if tokens_in or tokens_out:
            token_bars.append(
                HourBar(
                    x=x,
                    low_h=tokens_in / peak_tokens * BAND_H,
                    high_h=tokens_out / peak_tokens * BAND_H,
                    title=f"{when}: {tokens_in} input tokens, {tokens_out} output tokens",
                )
            )
    hours = len(points)
    requests, tokens_in, tokens_out = (
        sum(_count(p, f) for p in points) for f in ("requests", "input_tokens", "output_tokens")
    )
    return UsageChart(
        name=name,
        hours=hours,
        requests=requests,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        label=(
            f"Usage of {name}, last {max(1, hours // 24)} days, hourly: {requests} requests, "
            f"{tokens_in} input and {tokens_out} output tokens"
        ),
        request_bars=request_bars,
        token_bars=token_bars,
    )


async def charts(
    loads: Mapping[str, Awaitable[JsonObject]],
) -> dict[str, UsageChart | None]:
    """Each name's chart from its usage-history call; ``None`` where the admin API refused
    (a provider deleted since the list was read, say): the page still renders."""
    names = list(loads)
    results = await asyncio.gather(*loads.values(), return_exceptions=True)
    out: dict[str, UsageChart | None] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, AdminApiError):
            out[name] = None
        elif isinstance(result, BaseException):
            raise result
        else:
            out[name] = usage_chart(result, name)
    return out
