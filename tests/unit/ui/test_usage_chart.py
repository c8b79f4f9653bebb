"""The 28-day usage chart: its geometry, its SVG, and the agent and providers pages showing it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from fastapi.testclient import TestClient

import codexpool_ui
from codexpool_ui.usage_chart import BAND_H, usage_chart
from tests.unit.ui.conftest import sign_in
from tests.unit.ui.fake_admin import ADMIN_TOKEN, VIEWER_TOKEN, FakeAdmin

_USAGE = Jinja2Templates(directory=Path(codexpool_ui.__file__).parent / "templates").get_template(
    "_usage.html"
)
START = datetime(2026, 1, 1, tzinfo=UTC)


def history(
    hours: int = 672, busy: dict[int, tuple[int, int, int, int]] | None = None
) -> dict[str, Any]:
    """A usage-history document; ``busy`` maps an hour index to (requests, failures, in, out)."""
    total = []
    for i in range(hours):
        requests, failures, tokens_in, tokens_out = (busy or {}).get(i, (0, 0, 0, 0))
        total.append(
            {
                "t": (START + timedelta(hours=i)).isoformat(),
                "requests": requests,
                "successes": requests - failures,
                "failures": failures,
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
            }
        )
    return {
        "hours": hours,
        "total": total,
        "requests": sum(p["requests"] for p in total),
        "providers": [],
    }


def test_bars_only_for_busy_hours_each_band_scaled_to_its_peak() -> None:
    chart = usage_chart(history(busy={3: (4, 1, 300, 100), 10: (2, 0, 150, 50)}), "a")
    assert (chart.hours, chart.days, chart.requests) == (672, 28, 6)
    assert (chart.input_tokens, chart.output_tokens) == (450, 150)
    first, second = chart.request_bars
    assert (first.x, first.low_h, first.high_h) == (3, 3 / 4 * BAND_H, 1 / 4 * BAND_H)
    assert (second.x, second.low_h + second.high_h) == (10, BAND_H / 2)
    assert first.title == "2026-01-01 03:00 UTC: 4 requests, 1 failed"
    top = chart.token_bars[0]
    assert (top.low_h, top.high_h) == (300 / 400 * BAND_H, 100 / 400 * BAND_H)
    assert "300 input tokens, 100 output tokens" in top.title


def test_an_idle_month_is_two_empty_bands() -> None:
    chart = usage_chart(history(), "quiet")
    assert (chart.request_bars, chart.token_bars, chart.requests) == ([], [], 0)
    assert usage_chart({}, "nothing").hours == 0


def test_the_svg_has_one_group_per_busy_hour_and_escapes_names() -> None:
    chart = usage_chart(history(busy={0: (1, 0, 10, 5), 5: (3, 3, 0, 0)}), "<x>")
    svg = str(_USAGE.module.usage_chart(chart))  # type: ignore[attr-defined]
    assert svg.count('data-kind="requests"') == 2 and svg.count('data-kind="tokens"') == 1
    assert svg.count('class="tl-fail"') == 1 and svg.count('class="uh-out"') == 1
    assert 'viewBox="0 0 672 84"' in svg
    assert "<x>" not in svg and "&lt;x&gt;" in svg


def _serve_history(fake: FakeAdmin, doc: dict[str, Any]) -> None:
    async def agent_history(agent_id: str) -> dict[str, Any]:
        return doc

    async def provider_history(name: str) -> dict[str, Any]:
        return doc

    fake.app.add_api_route("/api/agents/{agent_id}/codex-pool/usage-history", agent_history)
    fake.app.add_api_route("/api/providers/{name}/usage-history", provider_history)


def test_the_agent_and_providers_pages_show_the_chart(client: TestClient, fake: FakeAdmin) -> None:
    _serve_history(fake, history(busy={671: (7, 1, 700, 70)}))
    sign_in(client, VIEWER_TOKEN)
    agent = client.get("/agents/my-agent").text
    assert 'data-testid="usage-my-agent"' in agent
    assert "<strong>7</strong> requests" in agent
    providers = client.get("/providers").text
    for i in (1, 2, 3):
        assert f'data-testid="usage-chatgpt-oauth-account-{i}"' in providers


def test_without_a_history_the_pages_still_render(client: TestClient) -> None:
    sign_in(client, ADMIN_TOKEN)  # the fake serves no usage history: 404 for each
    agent = client.get("/agents/my-agent")
    assert agent.status_code == 200 and 'data-testid="usage-' not in agent.text
    providers = client.get("/providers")
    assert providers.status_code == 200 and "providers-usage" not in providers.text
