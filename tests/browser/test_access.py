"""Signing in and out, what a viewer may do, CSRF, and the page at phone width."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Pool, Stack

# Generous: the first test of a worker also waits for the five services to start.
pytestmark = pytest.mark.timeout(300)


def test_sign_in_open_pool_and_sign_out(
    new_context: Any, stack: Stack, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(1)
    page: Page = new_context().new_page()
    page.goto(pool.page_path)
    page.get_by_test_id("login-token").fill("cpa_not-a-real-token")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("error-message")).to_contain_text("did not accept this token")
    page.get_by_test_id("login-token").fill(stack.admin_token)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("pool-title")).to_be_visible()
    expect(page.get_by_test_id("role-badge")).to_have_text("admin")
    page.get_by_test_id("nav-agents").click()
    page.get_by_test_id(f"open-pool-{pool.agent_id}").click()
    expect(page.get_by_test_id("pool-title")).to_be_visible()
    page.get_by_test_id("logout-button").click()
    expect(page.get_by_test_id("notice")).to_have_text("You are signed out.")
    page.goto("/agents")
    expect(page.get_by_test_id("login-form")).to_be_visible()


def test_a_viewer_sees_the_pool_but_cannot_save(
    viewer_page: Page, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(2)
    a, b = pool.providers
    pool.save("round-robin", [a, b])
    viewer_page.goto(pool.page_path)
    expect(viewer_page.get_by_test_id("readonly-notice")).to_be_visible()
    expect(viewer_page.get_by_test_id(f"row-{a}")).to_be_visible()
    for absent in ("routing-form", "save-routing", "refresh-button", f"delete-{a}", "oauth-table"):
        expect(viewer_page.get_by_test_id(absent)).to_have_count(0)
    # A hand-made save with a valid CSRF token: the admin API refuses it, the page says why.
    csrf = viewer_page.get_by_test_id("logout-csrf").get_attribute("value")
    form: dict[str, str | float | bool] = {
        "csrf_token": csrf or "",
        "action": "save",
        "strategy": "primary-first",
        "providers": b,
    }
    response = viewer_page.request.post(f"{pool.page_path}/routing", form=form)
    assert response.status == 403
    assert "this action needs the admin role" in response.text()
    with pool.stack.admin() as admin:
        saved = admin.get(f"/api/agents/{pool.agent_id}/codex-pool").json()
    assert saved["providers"] == [a, b]


def test_a_form_post_without_csrf_token_is_refused(
    admin_page: Page, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(1)
    [a] = pool.providers
    pool.save("round-robin", [a])
    admin_page.goto(pool.page_path)
    response = admin_page.request.post(f"{pool.page_path}/providers/{a}/delete", form={})
    assert response.status == 403
    admin_page.set_content(response.text())
    expect(admin_page.get_by_test_id("error-page-message")).to_contain_text(
        "did not carry a valid CSRF token"
    )
    with pool.stack.admin() as admin:
        assert admin.get(f"/api/agents/{pool.agent_id}/codex-pool").json()["providers"] == [a]


def test_the_pool_page_is_usable_at_phone_width(
    admin_page: Page, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(2)
    pool.save("round-robin", pool.providers)
    admin_page.set_viewport_size({"width": 390, "height": 844})
    admin_page.goto(pool.page_path)
    table_box = admin_page.get_by_test_id("activity-scroll")
    expect(table_box).to_be_visible()
    assert table_box.evaluate("el => el.scrollWidth > el.clientWidth"), "the table should scroll"
    assert admin_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "the page itself must not scroll sideways"
    )
