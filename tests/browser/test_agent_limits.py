"""An agent's limits on its page, in chromium against the real services (issue 20): set by the
form, shown, applied by the router (the 3rd request in the minute of a 2 req/min agent is
refused with agent_limit_reached), then removed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, MODEL_BODY, Stack

# Generous: the first test of a worker also waits for the five services to start.
pytestmark = pytest.mark.timeout(300)


def test_limits_are_set_on_the_agent_page_and_applied(
    admin_page: Page, stack: Stack, make_pool: Any
) -> None:
    pool = make_pool(1)
    pool.save("round-robin", pool.providers)
    page = admin_page
    page.goto(f"/agents/{pool.agent_id}")
    expect(page.get_by_test_id("limit-requests_per_minute")).to_have_text("no limit")
    page.get_by_test_id("limits-rpm").fill("2")
    page.get_by_test_id("limits-models").fill("gpt-5-codex, gpt-5")
    page.get_by_test_id("save-limits").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Limits saved")
    expect(page.get_by_test_id("limit-requests_per_minute")).to_have_text("2")
    expect(page.get_by_test_id("limit-models")).to_have_text("gpt-5-codex, gpt-5")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "console-agent-limits.png", full_page=True)

    headers = {"Authorization": f"Bearer {pool.api_key}"}
    with httpx.Client(base_url=stack.router, headers=headers, timeout=30) as router:
        statuses = [router.post("/v1/responses", json=MODEL_BODY).status_code for _ in range(2)]
        refused = router.post("/v1/responses", json=MODEL_BODY)
        other_model = router.post("/v1/responses", json={**MODEL_BODY, "model": "o3"})
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "agent_limit_reached"
    assert other_model.status_code == 403

    # Emptied fields remove the limits.
    page.get_by_test_id("limits-rpm").fill("")
    page.get_by_test_id("limits-models").fill("")
    page.get_by_test_id("save-limits").click()
    expect(page.get_by_test_id("limit-requests_per_minute")).to_have_text("no limit")
    expect(page.get_by_test_id("limit-models")).to_have_text("any")
