"""The Codex Pool page in chromium against real processes: the seed's example, live numbers,
a failing account, delete, Refresh Live State, the overflow counted apart."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, Pool, Stack

NO_RELOAD_MARK = "window.__codexpoolNoReload"

# Generous: the first test of a worker also waits for the five services to start.
pytestmark = pytest.mark.timeout(300)


def _mark(page: Page) -> None:
    """A flag on the window: it survives live updates and vanishes on any reload."""
    page.evaluate(f"{NO_RELOAD_MARK} = true")


def _not_reloaded(page: Page) -> bool:
    return bool(page.evaluate(f"{NO_RELOAD_MARK} === true"))


def _wait_for(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def _number(page: Page, testid: str) -> float | None:
    text = (page.get_by_test_id(testid).text_content() or "").strip()
    try:
        return float(text)
    except ValueError:
        return None


def test_the_seed_example_by_clicking(admin_page: Page, make_pool: Callable[..., Pool]) -> None:
    one, two = "chatgpt-oauth-account-1", "chatgpt-oauth-account-2"
    pool = make_pool(2, names=[one, two])
    admin_page.goto("/agents")
    admin_page.get_by_test_id(f"open-pool-{pool.agent_id}").click()
    expect(admin_page.get_by_test_id("routing-empty")).to_be_visible()
    for name in (one, two):
        admin_page.get_by_test_id("add-provider-select").select_option(name)
        admin_page.get_by_test_id("add-provider-button").click()
        expect(admin_page.get_by_test_id(f"routing-item-{name}")).to_be_visible()
    admin_page.get_by_test_id("strategy-select").select_option("round-robin")
    admin_page.get_by_test_id("save-routing").click()
    expect(admin_page.get_by_test_id("notice")).to_have_text("Routing configuration saved.")
    expect(admin_page.get_by_test_id(f"row-{one}")).to_be_visible()
    expect(admin_page.get_by_test_id(f"row-{two}")).to_be_visible()
    with pool.stack.admin() as admin:
        saved = admin.get(f"/api/agents/{pool.agent_id}/codex-pool").json()
    assert (saved["strategy"], saved["providers"]) == ("round-robin", [one, two])
    served = pool.send(4)
    assert served in ([one, two] * 2, [two, one] * 2)


def test_traffic_shows_up_live_without_a_reload(
    admin_page: Page, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(2)
    a, b = pool.providers
    pool.save("round-robin", [a, b])
    admin_page.goto(pool.page_path)
    expect(admin_page.get_by_test_id(f"requests-{a}")).to_have_text("0")
    _mark(admin_page)
    published = pool.stack.published()
    pool.send(6)
    pool.stack.wait_for_events(published + 6)
    for name in (a, b):
        recorded = len(pool.sim_requests(name))
        assert recorded == 3
        expect(admin_page.get_by_test_id(f"requests-{name}")).to_have_text(str(recorded))
        expect(admin_page.get_by_test_id(f"success-rate-{name}")).to_have_text("100.0 %")
        expect(admin_page.get_by_test_id(f"fallback-count-{name}")).to_have_text("0")
    assert _not_reloaded(admin_page)


def test_a_failing_account_loses_health_and_the_other_takes_the_fallbacks(
    admin_page: Page, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(2)
    a, b = pool.providers
    pool.save("round-robin", [a, b])
    admin_page.goto(pool.page_path)
    _mark(admin_page)
    published = pool.stack.published()
    pool.send(4)
    pool.stack.wait_for_events(published + 4)
    expect(admin_page.get_by_test_id(f"requests-{a}")).to_have_text("2")
    _wait_for(lambda: _number(admin_page, f"health-score-{a}") is not None, "a first score")
    before = _number(admin_page, f"health-score-{a}")
    assert before is not None

    fault = {"kind": "http_error", "status": 500, "count": 3}
    pool.sim("POST", f"/_sim/accounts/{pool.accounts[a]}/faults", json=fault)
    # Round-robin still picks a for every other request; each of its 3 failures falls over to b.
    assert pool.send(6) == [b] * 6
    assert len(pool.sim_requests(a)) == 2 + 3
    expect(admin_page.get_by_test_id(f"fallback-count-{b}")).to_have_text("3")
    expect(admin_page.get_by_test_id(f"fallback-count-{a}")).to_have_text("0")

    def dropped() -> bool:
        score = _number(admin_page, f"health-score-{a}")
        return score is not None and score < before

    _wait_for(dropped, f"the health score of {a} drops below {before}")
    assert _not_reloaded(admin_page)
    admin_page.get_by_test_id(f"health-details-{a}").click()
    expect(admin_page.get_by_test_id(f"health-formula-{a}")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    admin_page.screenshot(path=ARTIFACTS / "pool-page.png", full_page=True)


def test_delete_a_provider_and_see_it_gone(
    admin_page: Page, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(2)
    a, b = pool.providers
    pool.save("round-robin", [a, b])
    admin_page.goto(pool.page_path)
    admin_page.get_by_test_id(f"delete-{a}").click()
    expect(admin_page.get_by_test_id("notice")).to_contain_text("removed from the pool")
    expect(admin_page.get_by_test_id(f"row-{a}")).to_have_count(0)
    expect(admin_page.get_by_test_id(f"routing-item-{a}")).to_have_count(0)
    expect(admin_page.get_by_test_id(f"row-{b}")).to_be_visible()
    assert pool.send(3) == [b] * 3


def test_refresh_live_state_shows_the_sims_quota(
    admin_page: Page, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(1)
    [a] = pool.providers
    pool.save("quota-aware", [a])
    patch = {"primary_used_percent": 37, "secondary_used_percent": 12}
    pool.sim("PATCH", f"/_sim/accounts/{pool.accounts[a]}", json=patch)
    admin_page.goto(pool.page_path)
    admin_page.get_by_test_id("refresh-button").click()
    expect(admin_page.get_by_test_id("notice")).to_have_text(
        "Live state refreshed from the upstream."
    )
    expect(admin_page.get_by_test_id(f"quota-used-{a}-primary")).to_have_text("37 % used")
    expect(admin_page.get_by_test_id(f"quota-used-{a}-secondary")).to_have_text("12 % used")
    expect(admin_page.get_by_test_id(f"quota-{a}-primary")).to_contain_text("resets in")


def test_requests_the_overflow_took_show_apart_from_the_members(
    admin_page: Page, make_pool: Callable[..., Pool]
) -> None:
    """Issue 19: with the only member out of quota, the pool's overflow (codex-sim's plain
    /v1/responses, an account of its own standing for an API key) serves, and the page counts
    those requests in the overflow's table, live, not in the member's row."""
    pool = make_pool(1)
    [a] = pool.providers
    exhausted = {"primary_used_percent": 100, "primary_reset_after_seconds": 600}
    pool.sim("PATCH", f"/_sim/accounts/{pool.accounts[a]}", json=exhausted)
    key = pool.sim("POST", "/_sim/accounts", json={})["auth_json"]["tokens"]["access_token"]
    with pool.stack.admin() as admin:
        body = {
            "strategy": "round-robin",
            "providers": [a],
            "overflow": {"base_url": pool.stack.sim + "/v1", "api_key": key},
        }
        admin.put(f"/api/agents/{pool.agent_id}/codex-pool", json=body).raise_for_status()
    admin_page.goto(pool.page_path)
    expect(admin_page.get_by_test_id("overflow-table")).to_be_visible()
    expect(admin_page.get_by_test_id("overflow-requests")).to_have_text("0")
    _mark(admin_page)
    published = pool.stack.published()
    assert pool.send(3) == ["overflow"] * 3
    pool.stack.wait_for_events(published + 3)
    expect(admin_page.get_by_test_id("overflow-requests")).to_have_text("3")
    expect(admin_page.get_by_test_id("overflow-success-rate")).to_have_text("100.0 %")
    expect(admin_page.get_by_test_id("overflow-target")).to_have_text(pool.stack.sim + "/v1")
    # The member's row counts its own attempts (each answered its usage limit), none of these.
    expect(admin_page.get_by_test_id(f"success-rate-{a}")).not_to_have_text("100.0 %")
    assert key not in admin_page.content()
    assert _not_reloaded(admin_page)


def test_relink_an_account_with_the_device_code(
    admin_page: Page, make_pool: Callable[..., Pool], stack: Stack
) -> None:
    pool = make_pool(1)
    [a] = pool.providers
    pool.save("primary-first", [a])
    admin_page.goto(pool.page_path)
    expect(admin_page.get_by_test_id(f"oauth-account-{a}")).to_have_text(pool.accounts[a])
    admin_page.get_by_test_id(f"relink-{a}").click()
    code = (admin_page.get_by_test_id("device-code").text_content() or "").strip()
    assert code
    expect(admin_page.get_by_test_id("device-url")).to_contain_text(stack.sim)
    approval = {"account_id": pool.accounts[a]}
    httpx.post(f"{stack.sim}/_sim/device-codes/{code}/approve", json=approval).raise_for_status()
    admin_page.get_by_test_id("relink-complete").click()
    expect(admin_page.get_by_test_id("notice")).to_have_text(
        "Account re-linked: the provider is active again."
    )
