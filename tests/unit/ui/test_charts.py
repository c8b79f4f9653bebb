from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates

import codexpool_ui
from codexpool_ui import formatting
from codexpool_ui.charts import quota_bar, timeline
from codexpool_ui.view import activity_rows

_CHARTS = Jinja2Templates(directory=Path(codexpool_ui.__file__).parent / "templates").get_template(
    "_charts.html"
)


def timeline_svg(points: list[dict[str, Any]], provider: str) -> str:
    return str(_CHARTS.module.timeline(timeline(points, provider)))  # type: ignore[attr-defined]


def quota_bar_svg(used: float, label: str) -> str:
    return str(_CHARTS.module.quota_bar(quota_bar(used, label)))  # type: ignore[attr-defined]


def _point(minute: int, requests: int, failures: int = 0, fallbacks: int = 0) -> dict[str, object]:
    return {
        "t": f"2026-01-01T10:{minute:02d}:00Z",
        "requests": requests,
        "successes": requests - failures,
        "failures": failures,
        "fallbacks": fallbacks,
    }


def test_timeline_draws_stacked_bars_and_fallback_ticks() -> None:
    svg = timeline_svg([_point(0, 0), _point(1, 4, failures=1, fallbacks=2)], "acct")
    assert svg.count('class="tl-ok"') == 1
    assert svg.count('class="tl-fail"') == 1
    assert svg.count('class="tl-fallback"') == 1
    assert "<title>10:01 UTC 4 requests, 3 ok, 1 failed, 2 fallbacks in</title>" in svg
    assert (
        'aria-label="Timeline of acct, last 2 minutes: 4 requests, 1 failed, 2 fallbacks in"' in svg
    )


def test_timeline_escapes_provider_names() -> None:
    svg = timeline_svg([], '"><script>')
    assert "<script>" not in svg and "&#34;&gt;&lt;script&gt;" in svg


def test_quota_bar_levels() -> None:
    assert 'class="qb-ok"' in (quota_bar_svg(10, "x"))
    assert 'class="qb-warn"' in (quota_bar_svg(75, "x"))
    assert 'class="qb-crit" x="0" y="0" width="100.0"' in (quota_bar_svg(140, "x"))


def test_durations_and_resets_read_naturally() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert formatting.span(45) == "45 s"
    assert formatting.span(3 * 3600 + 5 * 60) == "3 h 5 min"
    assert formatting.span(2 * 86400) == "2 d"
    assert formatting.until(now.timestamp() + 600, now) == "resets in 10 min"
    assert formatting.until("2025-12-31T00:00:00Z", now) == "reset due"
    assert formatting.until(None, now) == ""
    assert formatting.percent(None) == "-"


def test_rows_tolerate_missing_fields() -> None:
    rows = activity_rows({"providers": [{"provider": "a"}, {"nonsense": 1}, "x"]})
    assert [r.name for r in rows] == ["a"]
    assert rows[0].requests == 0 and rows[0].success_rate == "-" and rows[0].quota == []
    assert rows[0].status_label == "active"


def test_statuses_are_labelled() -> None:
    raw = [{"provider": "a", "status": "needs_reauth"}, {"provider": "b", "status": "unregistered"}]
    rows = activity_rows({"providers": raw})
    assert [r.status_label for r in rows] == ["needs re-auth", "not registered"]


def test_rows_say_why_the_router_skips_a_provider() -> None:
    raw = {
        "provider": "a",
        "circuit": "open",
        "circuit_open_until": "2030-01-01T00:01:00Z",
        "cooldown_until": "2030-01-01T05:00:00Z",
        "cooldown_reason": "usage_limit",
        "refresh_error": "upstream answered 401",
    }
    assert activity_rows({"providers": [raw]})[0].notes == [
        "circuit open until 2030-01-01 00:01 UTC",
        "usage_limit: cooling down until 2030-01-01 05:00 UTC",
        "refresh failed: upstream answered 401",
    ]
