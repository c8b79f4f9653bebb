"""A request's routing explanation in chromium against real processes: the pool page lists it,
and opening it says in words that one member was skipped while cooling down after its usage
limit and that the request failed over from a 500."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, MODEL_BODY, Pool

pytestmark = pytest.mark.timeout(300)


def _send(pool: Pool) -> httpx.Response:
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    with httpx.Client(base_url=pool.stack.router, headers=headers, timeout=30) as router:
        response = router.post("/v1/responses", json=MODEL_BODY)
    assert response.status_code == 200, response.text
    return response


def test_a_failed_over_request_is_explained_on_the_pool_page(
    viewer_page: Page, admin_page: Page, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(3)
    a, b, c = pool.providers
    pool.save("primary-first", [a, b, c])
    usage_limit = {"kind": "usage_limit", "count": 1}
    pool.sim("POST", f"/_sim/accounts/{pool.accounts[a]}/faults", json=usage_limit)
    assert _send(pool).headers["x-codexpool-provider"] == b  # a is cooling down from now on
    server_error = {"kind": "http_error", "status": 500, "count": 1}
    pool.sim("POST", f"/_sim/accounts/{pool.accounts[b]}/faults", json=server_error)
    response = _send(pool)
    assert response.headers["x-codexpool-provider"] == c
    assert response.headers["x-codexpool-attempts"] == "2"
    request_id = response.headers["x-request-id"]

    with pool.stack.admin() as admin:
        deadline_polls = 100
        for _ in range(deadline_polls):
            if admin.get(f"/api/requests/{request_id}").status_code == 200:
                break
            viewer_page.wait_for_timeout(200)
        else:
            raise AssertionError(f"request {request_id} was not explained within 20 s")

    viewer_page.goto(pool.page_path)
    expect(viewer_page.get_by_test_id(f"request-row-{request_id}")).to_be_visible()
    viewer_page.get_by_test_id(f"request-link-{request_id}").click()
    expect(viewer_page.get_by_test_id("request-title")).to_contain_text(request_id)
    words = viewer_page.get_by_test_id("explanation-words").locator("li")
    expect(words.nth(0)).to_contain_text(f"{a} skipped: cooling down until")
    expect(words.nth(0)).to_contain_text("after usage_limit")
    expect(words.nth(1)).to_have_text(f"{b} chosen: first eligible in pool order (primary-first)")
    expect(words.nth(2)).to_contain_text(f"{c} tried next: {b} failed (server_error, HTTP 500")
    expect(viewer_page.get_by_test_id(f"candidate-{a}")).to_contain_text("cooldown (usage_limit)")
    expect(viewer_page.get_by_test_id("attempt-1")).to_contain_text("server_error")
    expect(viewer_page.get_by_test_id("attempt-2")).to_contain_text(c)
    ARTIFACTS.mkdir(exist_ok=True)
    viewer_page.screenshot(path=ARTIFACTS / "request-explanation.png", full_page=True)

    # Next to it, the runway in a sentence; the what-if replay of these two requests is an
    # admin's (it costs work): a viewer is not offered it.
    viewer_page.goto(pool.page_path)
    expect(viewer_page.get_by_test_id("runway-sentence")).to_contain_text("quota")
    expect(viewer_page.get_by_test_id("replay-form")).to_have_count(0)
    admin_page.goto(pool.page_path)
    admin_page.get_by_test_id("replay-strategy").select_option("round-robin")
    admin_page.get_by_test_id("replay-hours").select_option("1")
    admin_page.get_by_test_id("replay-button").click()
    table = admin_page.get_by_test_id("replay-table")
    expect(table).to_contain_text("2 recorded requests replayed with round-robin")
    expect(admin_page.get_by_test_id("replay-actual-limited")).to_have_text("1")
    admin_page.screenshot(path=ARTIFACTS / "pool-replay.png", full_page=True)
