"""Server-rendered SVG: the per-provider timeline and the quota bars (no chart library, no CDN).

Colours come from classes styled by the UI's stylesheet, because the page's Content Security
Policy allows no inline styles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from codexpool_ui.formatting import clock_time, parse_time

_BAR_W = 3
_HEIGHT = 36


def _count(point: Mapping[str, Any], field: str) -> int:
    value = point.get(field, 0)
    return value if isinstance(value, int) and value > 0 else 0


def timeline_svg(points: Sequence[Mapping[str, Any]], provider: str) -> Markup:
    """Stacked bars per bucket: successes below, failures above, a tick where fallbacks came in."""
    width = max(len(points), 1) * _BAR_W
    peak = max((_count(p, "requests") for p in points), default=0) or 1
    totals = {f: sum(_count(p, f) for p in points) for f in ("requests", "failures", "fallbacks")}
    label = (
        f"Timeline of {provider}, last {len(points)} minutes: {totals['requests']} requests, "
        f"{totals['failures']} failed, {totals['fallbacks']} fallbacks in"
    )
    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {_HEIGHT}" width="{width}" '
        f'height="{_HEIGHT}" role="img" aria-label="{escape(label)}" '
        f'data-testid="timeline-{escape(provider)}" preserveAspectRatio="none">',
        f'<rect class="tl-bg" x="0" y="0" width="{width}" height="{_HEIGHT}"/>',
    ]
    for i, point in enumerate(points):
        requests = _count(point, "requests")
        if not requests:
            continue
        ok, failed = _count(point, "successes"), _count(point, "failures")
        x = i * _BAR_W
        ok_h = ok / peak * (_HEIGHT - 4)
        failed_h = failed / peak * (_HEIGHT - 4)
        when = parse_time(point.get("t"))
        title = (
            f"{clock_time(when) if when else ''} {requests} requests, {ok} ok, {failed} failed, "
            f"{_count(point, 'fallbacks')} fallbacks in"
        ).strip()
        parts.append(f"<g><title>{escape(title)}</title>")
        if ok_h:
            parts.append(
                f'<rect class="tl-ok" x="{x}" y="{_HEIGHT - ok_h:.1f}" '
                f'width="{_BAR_W - 1}" height="{ok_h:.1f}"/>'
            )
        if failed_h:
            parts.append(
                f'<rect class="tl-fail" x="{x}" y="{_HEIGHT - ok_h - failed_h:.1f}" '
                f'width="{_BAR_W - 1}" height="{failed_h:.1f}"/>'
            )
        if _count(point, "fallbacks"):
            parts.append(
                f'<rect class="tl-fallback" x="{x}" y="0" width="{_BAR_W - 1}" height="3"/>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def quota_bar_svg(used_percent: float, label: str) -> Markup:
    """A 0-100 % bar; its class turns amber from 70 % and red from 90 %."""
    used = min(max(used_percent, 0.0), 100.0)
    level = "crit" if used >= 90 else "warn" if used >= 70 else "ok"
    return Markup(
        f'<svg class="quota-bar" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}"><rect class="qb-bg" x="0" y="0" width="100" height="8"/>'
        f'<rect class="qb-{level}" x="0" y="0" width="{used:.1f}" height="8"/></svg>'
    )
