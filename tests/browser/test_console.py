"""The admin console (issue 16) in chromium against the real services: providers registered by
paste, upload and device code; an agent, its keys used through the ``openai`` SDK, rotated and
revoked; a viewer token made on /tokens, read-only everywhere, then revoked; all on /audit."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, Pool, Stack

# Generous: the first test of a worker also waits for the five services to start.
pytestmark = pytest.mark.timeout(300)

SLOW = 30_000
"""ms: what waits on the device login, or on the live table catching up with the events."""


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"console-{name}.png", full_page=True)


def _sim_account(stack: Stack) -> dict[str, Any]:
    response = httpx.post(f"{stack.sim}/_sim/accounts", json={}, timeout=10)
    response.raise_for_status()
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def quick_device_logins(stack: Stack) -> Iterator[None]:
    """The sim asks device-code clients to poll every second (not five) during the test."""
    config = httpx.get(f"{stack.sim}/_sim/config", timeout=10).json()
    httpx.patch(f"{stack.sim}/_sim/config", json={"device_interval_s": 1}, timeout=10)
    try:
        yield
    finally:
        previous = {"device_interval_s": config["device_interval_s"]}
        httpx.patch(f"{stack.sim}/_sim/config", json=previous, timeout=10)


def _ask(router: str, api_key: str) -> tuple[str, str]:
    """One request through the router with the official SDK: (the answer, who served it)."""
    client = openai.OpenAI(base_url=f"{router}/v1", api_key=api_key, max_retries=0, timeout=30)
    raw = client.responses.with_raw_response.create(model="gpt-5-codex", input="hi")
    return raw.parse().output_text, raw.headers["x-codexpool-provider"]


def _refused(router: str, api_key: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        _ask(router, api_key)


def _register_by_paste(page: Page, name: str, auth_json: dict[str, Any]) -> None:
    page.goto("/providers")
    page.get_by_test_id("register-name").fill(name)
    page.get_by_test_id("register-auth-json").fill(json.dumps(auth_json))
    page.get_by_test_id("register-submit").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Provider registered")


def _new_key(page: Page) -> str:
    key = (page.get_by_test_id("new-key").text_content() or "").strip()
    assert key.startswith("cpk_")
    return key


def test_providers_agent_keys_and_audit(
    admin_page: Page, stack: Stack, tmp_path: Path, quick_device_logins: None
) -> None:
    page = admin_page
    tag = secrets.token_hex(3)
    pasted, signed_in, uploaded = (f"c{tag}-{kind}" for kind in ("pasted", "device", "upload"))
    agent_id = f"console-{tag}"

    # 1. Providers: paste an auth.json, sign one in with the device code, upload a file.
    first = _sim_account(stack)
    _register_by_paste(page, pasted, first["auth_json"])
    expect(page.get_by_test_id(f"provider-status-{pasted}")).to_have_text("active")
    expect(page.get_by_test_id(f"provider-account-{pasted}")).to_have_text(first["account_id"])
    expect(page.get_by_test_id(f"provider-pools-{pasted}")).to_have_text("none")

    second = _sim_account(stack)
    page.get_by_test_id("device-name").fill(signed_in)
    page.get_by_test_id("device-start").click()
    code = (page.get_by_test_id("device-code").text_content() or "").strip()
    assert code
    expect(page.get_by_test_id("device-url")).to_contain_text(stack.sim)
    _shot(page, "providers-device-code")
    approval = {"account_id": second["account_id"]}
    httpx.post(f"{stack.sim}/_sim/device-codes/{code}/approve", json=approval, timeout=10)
    # Nobody clicks: the page polls and finishes by itself.
    expect(page.get_by_test_id("notice")).to_contain_text("Provider registered", timeout=SLOW)
    expect(page.get_by_test_id(f"provider-account-{signed_in}")).to_have_text(second["account_id"])

    third = _sim_account(stack)
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps(third["auth_json"]))
    page.get_by_test_id("register-name").fill(uploaded)
    page.get_by_test_id("register-auth-file").set_input_files(auth_file)
    page.get_by_test_id("register-submit").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Provider registered")
    expect(page.get_by_test_id(f"provider-account-{uploaded}")).to_have_text(third["account_id"])

    # Bad input is refused with the field named, and nothing is registered.
    page.get_by_test_id("register-name").fill(f"c{tag}-broken")
    page.get_by_test_id("register-auth-json").fill("{not json")
    page.get_by_test_id("register-submit").click()
    expect(page.get_by_test_id("error-message")).to_contain_text("auth_json: not valid JSON")
    page.get_by_test_id("register-name").fill(pasted)
    page.get_by_test_id("register-auth-json").fill(json.dumps(first["auth_json"]))
    page.get_by_test_id("register-submit").click()
    expect(page.get_by_test_id("error-message")).to_contain_text("name")
    expect(page.get_by_test_id(f"provider-row-c{tag}-broken")).to_have_count(0)

    # 2. An agent: created on /agents, its first key shown once with the snippets.
    page.get_by_test_id("nav-agents").click()
    page.get_by_test_id("create-agent-id").fill(agent_id)
    page.get_by_test_id("create-agent-name").fill("Console agent")
    page.get_by_test_id("create-agent-submit").click()
    expect(page.get_by_test_id("agent-title")).to_have_text("Console agent")
    first_key = _new_key(page)
    expect(page.get_by_test_id("snippet-openai")).to_contain_text(f'"{stack.router}/v1"')
    expect(page.get_by_test_id("snippet-openai")).to_contain_text(first_key)
    expect(page.get_by_test_id("snippet-codex")).to_contain_text(f'base_url = "{stack.router}/v1"')
    expect(page.get_by_test_id("pool-empty")).to_be_visible()
    _shot(page, "agent-new-key")

    # Its pool: the pasted and device-registered providers, through the pool page.
    page.get_by_test_id("open-pool").first.click()
    for name in (pasted, signed_in, uploaded):
        page.get_by_test_id("add-provider-select").select_option(name)
        page.get_by_test_id("add-provider-button").click()
    page.get_by_test_id("strategy-select").select_option("primary-first")
    page.get_by_test_id("save-routing").click()
    expect(page.get_by_test_id("notice")).to_have_text("Routing configuration saved.")

    # 3. The key works through the openai SDK; the request shows on the pool page.
    published = stack.published()
    answer, served = _ask(stack.router, first_key)
    assert answer and served == pasted
    stack.wait_for_events(published + 1)
    expect(page.get_by_test_id(f"requests-{pasted}")).to_have_text("1", timeout=SLOW)
    _shot(page, "pool-after-request")

    # The agent page sums the pool up; rotating gives a new key and the router refuses the old.
    page.goto(f"/agents/{agent_id}")
    expect(page.get_by_test_id("pool-strategy")).to_have_text("primary-first")
    expect(page.get_by_test_id("pool-members-count")).to_have_text("3")
    page.get_by_test_id("rotate-key").click()
    second_key = _new_key(page)
    assert second_key != first_key
    expect(page.get_by_test_id("keys-table").locator("tbody tr")).to_have_count(1)
    _refused(stack.router, first_key)
    assert _ask(stack.router, second_key)[1] == pasted

    # Issue one more key, then revoke it: the router refuses it, the other keeps working.
    page.get_by_test_id("issue-key").click()
    extra_key = _new_key(page)
    assert _ask(stack.router, extra_key)[1] == pasted
    prefix_cells = page.locator("[data-testid^='key-prefix-']")
    expect(prefix_cells).to_have_count(2)
    extra_row = page.locator("[data-testid^='key-row-']", has_text=extra_key[:8])
    extra_row.locator("[data-testid^='revoke-key-']").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Router key revoked")
    expect(page.get_by_test_id("new-key-panel")).to_have_count(0)
    _refused(stack.router, extra_key)
    assert _ask(stack.router, second_key)[1] == pasted
    _shot(page, "agent")

    # 4. Disable and enable a provider; delete one, with its pools named first.
    page.goto("/providers")
    expect(page.get_by_test_id(f"provider-pools-{uploaded}")).to_have_text(agent_id)
    page.get_by_test_id(f"disable-{pasted}").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Provider disabled")
    expect(page.get_by_test_id(f"provider-status-{pasted}")).to_have_text("disabled")
    assert _ask(stack.router, second_key)[1] == signed_in
    page.get_by_test_id(f"enable-{pasted}").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Provider enabled")
    _shot(page, "providers")
    page.get_by_test_id(f"provider-delete-{uploaded}").click()
    expect(page.get_by_test_id(f"delete-pool-{agent_id}")).to_be_visible()
    _shot(page, "provider-delete-confirm")
    page.get_by_test_id("delete-confirm-button").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Provider deleted")
    expect(page.get_by_test_id(f"provider-row-{uploaded}")).to_have_count(0)

    # 5. Every action is on /audit with its actor, filterable by actor and kind.
    page.get_by_test_id("nav-audit").click()
    page.get_by_test_id("audit-actor").fill("bootstrap")
    page.get_by_test_id("audit-kind").fill("provider")
    page.get_by_test_id("audit-apply").click()
    rows = page.get_by_test_id("audit-row")
    expect(rows.first).to_be_visible()
    actions = {(r.get_attribute("data-action"), r.get_attribute("data-target")) for r in rows.all()}
    for expected in [
        ("provider.register", pasted),
        ("provider.oauth.start", signed_in),
        ("provider.register", signed_in),
        ("provider.register", uploaded),
        ("provider.update", pasted),
        ("provider.delete", uploaded),
    ]:
        assert expected in actions, expected
    assert all(a.startswith("provider.") for a, _ in actions if a)
    for cell in page.get_by_test_id("audit-actor-cell").all():
        assert "bootstrap admin token" in (cell.text_content() or "")
    page.get_by_test_id("audit-kind").fill("agent")
    page.get_by_test_id("audit-apply").click()
    agent_actions = [
        r.get_attribute("data-action")
        for r in rows.all()
        if r.get_attribute("data-target") == agent_id
    ]
    for action in ("agent.key.revoke", "agent.key.add", "agent.key.rotate", "agent.create"):
        assert action in agent_actions, action
    page.get_by_test_id("audit-kind").fill("pool")
    page.get_by_test_id("audit-apply").click()
    expect(
        page.locator(f"[data-testid='audit-row'][data-target='{agent_id}']").first
    ).to_be_visible()
    page.get_by_test_id("audit-actor").fill("nobody-such")
    page.get_by_test_id("audit-apply").click()
    expect(page.get_by_test_id("audit-empty")).to_be_visible()
    page.get_by_test_id("audit-clear").click()
    _shot(page, "audit")

    # 6. Delete the agent: its key stops working.
    page.goto(f"/agents/{agent_id}")
    page.get_by_test_id("delete-agent").click()
    _shot(page, "agent-delete-confirm")
    page.get_by_test_id("delete-confirm-button").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Agent deleted")
    expect(page.get_by_test_id(f"agent-row-{agent_id}")).to_have_count(0)
    _refused(stack.router, second_key)
    page.goto("/audit?kind=agent.delete")
    expect(page.locator(f"[data-testid='audit-row'][data-target='{agent_id}']")).to_have_count(1)


def test_a_viewer_token_made_on_tokens_is_read_only_then_revoked(
    admin_page: Page, new_context: Any, stack: Stack, make_pool: Callable[..., Pool]
) -> None:
    pool = make_pool(1)
    [provider] = pool.providers
    pool.save("round-robin", [provider])
    name = f"viewer {secrets.token_hex(3)}"

    admin_page.goto("/tokens")
    admin_page.get_by_test_id("create-token-name").fill("")
    admin_page.get_by_test_id("create-token-submit").click()
    # The browser refuses the empty required field itself: nothing was posted.
    expect(admin_page.get_by_test_id("new-token-panel")).to_have_count(0)
    admin_page.get_by_test_id("create-token-name").fill(name)
    admin_page.get_by_test_id("create-token-role").select_option("viewer")
    admin_page.get_by_test_id("create-token-submit").click()
    token = (admin_page.get_by_test_id("new-token").text_content() or "").strip()
    assert token
    row = admin_page.locator("[data-testid^='token-row-']", has_text=name)
    expect(row).to_have_count(1)
    token_id = (row.get_attribute("data-testid") or "").removeprefix("token-row-")
    _shot(admin_page, "tokens")

    viewer: Page = new_context().new_page()
    viewer.goto("/login")
    viewer.get_by_test_id("login-token").fill(token)
    viewer.get_by_test_id("login-submit").click()
    expect(viewer.get_by_test_id("role-badge")).to_have_text("viewer")
    expect(viewer.get_by_test_id("signed-in-as")).to_have_text(name)
    for absent in ("nav-tokens", "nav-audit"):
        expect(viewer.get_by_test_id(absent)).to_have_count(0)

    viewer.get_by_test_id("nav-providers").click()
    expect(viewer.get_by_test_id("readonly-notice")).to_be_visible()
    expect(viewer.get_by_test_id(f"provider-row-{provider}")).to_be_visible()
    for absent in (
        "register-form",
        "device-start-form",
        f"disable-{provider}",
        f"provider-relink-{provider}",
        f"provider-delete-{provider}",
        f"provider-account-{provider}",
    ):
        expect(viewer.get_by_test_id(absent)).to_have_count(0)
    assert pool.accounts[provider] not in viewer.content()
    _shot(viewer, "providers-viewer")

    viewer.get_by_test_id("nav-agents").click()
    expect(viewer.get_by_test_id("create-agent-form")).to_have_count(0)
    viewer.goto(f"/agents/{pool.agent_id}")
    expect(viewer.get_by_test_id("keys-hidden")).to_be_visible()
    for absent in ("key-form", "issue-key", "rotate-key", "delete-agent", "keys-table"):
        expect(viewer.get_by_test_id(absent)).to_have_count(0)
    assert "cpk_" not in viewer.content()
    expect(viewer.get_by_test_id(f"pool-member-{provider}")).to_be_visible()
    _shot(viewer, "agent-viewer")
    for path in ("/tokens", "/audit"):
        viewer.goto(path)
        expect(viewer.get_by_test_id("readonly-notice")).to_be_visible()
        assert token not in viewer.content()
    # A change posted by hand with the viewer's valid CSRF token: the admin API refuses it.
    csrf = viewer.get_by_test_id("logout-csrf").get_attribute("value") or ""
    response = viewer.request.post(
        f"/providers/{provider}/status", form={"csrf_token": csrf, "status": "disabled"}
    )
    assert response.status == 403 and "admin role" in response.text()
    assert "Traceback" not in response.text()

    # Revoked on /tokens: the viewer's session ends at its next page.
    admin_page.goto("/tokens")
    admin_page.get_by_test_id(f"revoke-token-{token_id}").click()
    expect(admin_page.get_by_test_id("notice")).to_contain_text("Token revoked")
    expect(admin_page.get_by_test_id(f"token-row-{token_id}")).to_have_count(0)
    viewer.goto("/providers")
    expect(viewer.get_by_test_id("login-form")).to_be_visible()
    expect(viewer.get_by_test_id("notice")).to_contain_text("token was revoked")
    viewer.goto(f"/agents/{pool.agent_id}")
    expect(viewer.get_by_test_id("login-form")).to_be_visible()

    admin_page.goto("/audit?kind=token")
    for action in ("token.create", "token.revoke"):
        row = admin_page.locator(
            f"[data-testid='audit-row'][data-action='{action}'][data-target='{token_id}']"
        )
        expect(row).to_have_count(1)
        expect(row.get_by_test_id("audit-actor-cell")).to_contain_text("bootstrap admin token")
    assert re.search(r"token\.create", admin_page.content())


def test_relink_from_the_providers_page_finishes_by_itself(
    admin_page: Page, stack: Stack, make_pool: Callable[..., Pool], quick_device_logins: None
) -> None:
    pool = make_pool(1)
    [provider] = pool.providers
    admin_page.goto("/providers")
    admin_page.get_by_test_id(f"provider-relink-{provider}").click()
    code = (admin_page.get_by_test_id("device-code").text_content() or "").strip()
    approval = {"account_id": pool.accounts[provider]}
    httpx.post(f"{stack.sim}/_sim/device-codes/{code}/approve", json=approval, timeout=10)
    expect(admin_page.get_by_test_id("notice")).to_contain_text("Account re-linked", timeout=SLOW)
    expect(admin_page.get_by_test_id(f"provider-status-{provider}")).to_have_text("active")
    # A code nobody approves: the page keeps waiting, and says so.
    admin_page.get_by_test_id(f"provider-relink-{provider}").click()
    expect(admin_page.get_by_test_id("device-status")).to_contain_text(
        "Not approved yet", timeout=SLOW
    )
    expect(admin_page.get_by_test_id("device-panel")).to_be_visible()
