"""The 28-day usage chart in chromium against real processes: after requests through the router,
the agent page and the providers page draw the hour's bar with the sim's token counts."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, Pool

pytestmark = pytest.mark.timeout(300)


def _reload_until(page: Page, path: str, selector: str, text: str, timeout_s: float = 30.0) -> None:
    """The chart is drawn per page load (the history moves by the hour): reload until it shows
    ``text``, as the health service aggregates the outcome events."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.goto(path)
        caption = page.locator(selector)
        if caption.count() and text in (caption.text_content() or ""):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} never showed {text!r}")
        time.sleep(0.5)


def test_usage_chart_on_the_agent_and_providers_pages(
    admin_page: Page, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(2)
    pool.save("round-robin", pool.providers)
    for name in pool.providers:
        usage = {"input_tokens": 500, "output_tokens": 50, "cached_tokens": 0}
        pool.sim("PATCH", f"/_sim/accounts/{pool.accounts[name]}", json={"usage": usage})
    pool.send(4)

    path = f"/agents/{pool.agent_id}"
    _reload_until(admin_page, path, f'[data-testid="usage-caption-{pool.agent_id}"]', "4 requests")
    chart = admin_page.get_by_test_id(f"usage-{pool.agent_id}")
    expect(chart).to_contain_text("2000 input and 200 output tokens")
    # One bar for the hour of the run (two when it straddled the turn of an hour).
    bars = chart.locator('g[data-kind="requests"]').count()
    assert bars in (1, 2)
    expect(chart.locator('g[data-kind="tokens"] rect.uh-in')).to_have_count(bars)
    box = chart.locator("svg").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 40
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    admin_page.screenshot(path=str(ARTIFACTS / "usage-agent.png"), full_page=True)

    first = pool.providers[0]
    _reload_until(admin_page, "/providers", f'[data-testid="usage-caption-{first}"]', "2 requests")
    expect(admin_page.get_by_test_id(f"usage-{first}")).to_contain_text("1000 input")
    admin_page.screenshot(path=str(ARTIFACTS / "usage-providers.png"), full_page=True)
