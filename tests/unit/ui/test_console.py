"""The admin console pages against the fake admin API: providers, agents and keys, tokens, audit."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from codexpool_ui import agent_page
from tests.unit.ui.conftest import csrf_of, make_settings, sign_in
from tests.unit.ui.fake_admin import ADMIN_TOKEN, VIEWER_TOKEN, FakeAdmin

AUTH_JSON = {"tokens": {"id_token": "x.y.z", "access_token": "a.b.c", "refresh_token": "r"}}


def _changes(fake: FakeAdmin) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in fake.calls if m != "GET"]


def test_providers_page_folds_each_pool_into_its_providers(
    client: TestClient, fake: FakeAdmin
) -> None:
    fake.pools["my-agent"] = {
        "strategy": "round-robin",
        "providers": ["chatgpt-oauth-account-1"],
        "version": 1,
    }
    fake.row("chatgpt-oauth-account-1")["health_score"] = 77.0
    sign_in(client, ADMIN_TOKEN)
    page = client.get("/providers").text
    assert 'data-testid="provider-pools-chatgpt-oauth-account-1"' in page
    assert "/agents/my-agent/codex-pool" in page
    assert ">77<" in page and "acct-1" in page and "user1@example.com" in page
    assert 'data-testid="register-form"' in page and 'data-testid="device-start-form"' in page


def test_a_viewer_sees_providers_without_link_details_or_forms(
    client: TestClient, fake: FakeAdmin
) -> None:
    sign_in(client, VIEWER_TOKEN)
    page = client.get("/providers").text
    assert 'data-testid="provider-row-chatgpt-oauth-account-1"' in page
    assert 'data-testid="readonly-notice"' in page
    for absent in ("register-form", "device-start-form", "disable-", "provider-delete-"):
        assert absent not in page
    # The fake hands viewers the emails too; the page still shows no link details to them.
    assert "acct-1" not in page and "user1@example.com" not in page


def test_register_by_paste_and_by_upload(client: TestClient, fake: FakeAdmin) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    pasted = client.post(
        "/providers",
        data={"csrf_token": csrf, "name": "pasted", "auth_json": json.dumps(AUTH_JSON)},
    )
    assert pasted.status_code == 303 and pasted.headers["location"].endswith("notice=registered")
    uploaded = client.post(
        "/providers",
        data={"csrf_token": csrf, "name": "uploaded", "auth_json": ""},
        files={"auth_file": ("auth.json", json.dumps(AUTH_JSON).encode(), "application/json")},
    )
    assert uploaded.status_code == 303
    assert {"pasted", "uploaded"} <= set(fake.providers)
    assert fake.bodies[-1] == {"name": "uploaded", "auth_json": AUTH_JSON}
    assert "Provider registered" in client.get(uploaded.headers["location"]).text


def test_bad_registrations_are_refused_naming_the_field(
    client: TestClient, fake: FakeAdmin
) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    cases: list[tuple[dict[str, str], Any, str]] = [
        ({"name": "", "auth_json": "{}"}, None, "name: give the provider a name"),
        ({"name": "p", "auth_json": '{"tokens": "access_token_SECRET'}, None, "auth_json: not"),
        ({"name": "p", "auth_json": "[1]"}, None, "auth_json: a Codex auth.json is a JSON object"),
        ({"name": "p", "auth_json": ""}, None, "auth_json: paste the contents"),
        ({"name": "p"}, {"auth_file": ("a.json", b"\xff\xfe", "application/json")}, "auth_file:"),
        ({"name": "p", "auth_json": "x" * 70000}, None, "auth_json: larger than 64 KiB"),
        ({"name": "p", "auth_json": "{}"}, None, "auth_json.tokens: missing"),
        (
            {"name": "chatgpt-oauth-account-1", "auth_json": json.dumps(AUTH_JSON)},
            None,
            "already exists",
        ),
    ]
    for form, files, message in cases:
        response = client.post("/providers", data={"csrf_token": csrf, **form}, files=files)
        assert response.status_code in (409, 422), (form, response.status_code)
        assert message in response.text, (form, message)
        # The page says which field, never the secret text or a traceback.
        assert "SECRET" not in response.text and "Traceback" not in response.text
    assert "p" not in fake.providers


def test_sign_in_with_chatgpt_registers_once_approved(client: TestClient, fake: FakeAdmin) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    started = client.post("/providers/device", data={"csrf_token": csrf, "name": "fresh"})
    assert started.status_code == 200
    assert 'data-testid="device-code">ABCD-1234<' in started.text
    assert 'name="mode" value="register"' in started.text
    form = {
        "csrf_token": csrf,
        "mode": "register",
        "user_code": "ABCD-1234",
        "verification_uri": "http://127.0.0.1:8090/codex/device",
        "interval_s": "5",
    }
    pending = client.post("/providers/fresh/device/poll", data=form)
    assert pending.status_code == 202 and "Not approved yet" in pending.text
    linked = client.post("/providers/fresh/device/poll", data=form)
    assert linked.status_code == 303 and linked.headers["location"].endswith("notice=registered")
    assert "fresh" in fake.providers
    taken = client.post("/providers/device", data={"csrf_token": csrf, "name": "fresh"})
    assert (
        taken.status_code == 409 and "name: provider &#39;fresh&#39; already exists" in taken.text
    )
    unnamed = client.post("/providers/device", data={"csrf_token": csrf, "name": " "})
    assert unnamed.status_code == 422 and "name: give the new provider a name" in unnamed.text


def test_a_device_link_never_becomes_a_script_url(client: TestClient, fake: FakeAdmin) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    fake.device_polls["chatgpt-oauth-account-1"] = -5
    form = {"csrf_token": csrf, "mode": "relink", "verification_uri": "javascript:alert(1)"}
    page = client.post("/providers/chatgpt-oauth-account-1/device/poll", data=form)
    assert page.status_code == 202 and "javascript:" not in page.text


def test_disable_enable_and_delete_naming_the_pools(client: TestClient, fake: FakeAdmin) -> None:
    fake.pools["my-agent"] = {
        "strategy": "round-robin",
        "providers": ["chatgpt-oauth-account-2"],
        "version": 1,
    }
    csrf = sign_in(client, ADMIN_TOKEN)
    name = "chatgpt-oauth-account-2"
    off = client.post(f"/providers/{name}/status", data={"csrf_token": csrf, "status": "disabled"})
    assert off.headers["location"].endswith("notice=provider-disabled")
    assert fake.providers[name]["status"] == "disabled"
    assert 'data-testid="enable-chatgpt-oauth-account-2"' in client.get("/providers").text
    wrong = client.post(f"/providers/{name}/status", data={"csrf_token": csrf, "status": "gone"})
    assert wrong.status_code == 422 and "status: choose enable or disable" in wrong.text
    confirm = client.get(f"/providers/{name}/delete").text
    assert 'data-testid="delete-pool-my-agent"' in confirm
    assert ("DELETE", f"/api/providers/{name}") not in _changes(fake)
    deleted = client.post(f"/providers/{name}/delete", data={"csrf_token": csrf})
    assert deleted.headers["location"].endswith("notice=provider-deleted")
    assert name not in fake.providers and fake.pools["my-agent"]["providers"] == []
    assert client.get("/providers/nobody/delete").status_code == 404


def test_create_agent_shows_its_key_once_with_snippets(client: TestClient, fake: FakeAdmin) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    created = client.post("/agents", data={"csrf_token": csrf, "id": "fleet", "name": "Fleet"})
    assert created.status_code == 201
    page = created.text
    assert "cpk_first_key_shown_once" in page
    assert "base_url=&#34;http://127.0.0.1:8080/v1&#34;" in page
    assert "wire_api = &#34;responses&#34;" in page and "CODEXPOOL_API_KEY" in page
    assert "cpk_first_key_shown_once" not in client.get("/agents/fleet").text
    taken = client.post("/agents", data={"csrf_token": csrf, "id": "fleet"})
    assert taken.status_code == 409 and "already exists" in taken.text
    empty = client.post("/agents", data={"csrf_token": csrf, "id": ""})
    assert empty.status_code == 422 and "id: give the agent an id" in empty.text


def test_issue_rotate_and_revoke_router_keys(client: TestClient, fake: FakeAdmin) -> None:
    fake.keys["my-agent"] = [{"key_id": "old1", "prefix": "cpk_old1"}]
    csrf = sign_in(client, ADMIN_TOKEN)
    issued = client.post("/agents/my-agent/keys", data={"csrf_token": csrf, "action": "issue"})
    assert issued.status_code == 201 and "cpk_new_key_" in issued.text
    assert len(fake.keys["my-agent"]) == 2
    rotated = client.post("/agents/my-agent/keys", data={"csrf_token": csrf, "action": "rotate"})
    assert rotated.status_code == 201 and "the previous keys are revoked" in rotated.text
    [remaining] = fake.keys["my-agent"]
    revoked = client.post(
        f"/agents/my-agent/keys/{remaining['key_id']}/revoke", data={"csrf_token": csrf}
    )
    assert revoked.headers["location"] == "/agents/my-agent?notice=key-revoked"
    assert fake.keys["my-agent"] == []
    again = client.post(
        f"/agents/my-agent/keys/{remaining['key_id']}/revoke", data={"csrf_token": csrf}
    )
    assert again.status_code == 404 and "key_id" in again.text


def test_each_key_says_when_it_was_last_used(client: TestClient, fake: FakeAdmin) -> None:
    fake.keys["my-agent"] = [
        {"key_id": "used1", "prefix": "cpk_used", "last_used_at": "2026-12-04T14:05:09Z"},
        {"key_id": "idle1", "prefix": "cpk_idle", "last_used_at": None},
    ]
    sign_in(client, ADMIN_TOKEN)
    page = client.get("/agents/my-agent").text
    assert re.search(r'data-testid="key-last-used-used1">2026-12-04 14:05 UTC<', page)
    assert re.search(r'data-testid="key-last-used-idle1"><span class="hint">never<', page)


def test_a_viewer_sees_the_agent_without_keys_or_forms(client: TestClient, fake: FakeAdmin) -> None:
    fake.keys["my-agent"] = [{"key_id": "old1", "prefix": "cpk_old1"}]
    sign_in(client, VIEWER_TOKEN)
    page = client.get("/agents/my-agent").text
    assert 'data-testid="keys-hidden"' in page
    for absent in ("cpk_old1", "issue-key", "delete-agent", "create-agent-form"):
        assert absent not in page
    assert "create-agent-form" not in client.get("/agents").text


def test_delete_agent_after_confirming(client: TestClient, fake: FakeAdmin) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    assert 'data-testid="delete-confirm-button"' in client.get("/agents/my-agent/delete").text
    deleted = client.post("/agents/my-agent/delete", data={"csrf_token": csrf})
    assert deleted.headers["location"] == "/agents?notice=agent-deleted"
    assert "my-agent" not in fake.agents


def test_tokens_created_once_and_revoked(client: TestClient, fake: FakeAdmin) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    created = client.post("/tokens", data={"csrf_token": csrf, "name": "sre", "role": "viewer"})
    assert created.status_code == 201 and "cpa_secret_t1" in created.text
    listed = client.get("/tokens").text
    assert 'data-testid="token-row-t1"' in listed and "cpa_secret_t1" not in listed
    bad = client.post("/tokens", data={"csrf_token": csrf, "name": "x", "role": "root"})
    assert bad.status_code == 422 and "role: choose viewer or admin" in bad.text
    unnamed = client.post("/tokens", data={"csrf_token": csrf, "name": " ", "role": "admin"})
    assert unnamed.status_code == 422 and "name:" in unnamed.text
    revoked = client.post("/tokens/t1/revoke", data={"csrf_token": csrf})
    assert revoked.headers["location"] == "/tokens?notice=token-revoked"
    assert fake.tokens == {}


def test_viewers_get_no_tokens_or_audit_and_the_api_is_not_asked(
    client: TestClient, fake: FakeAdmin
) -> None:
    sign_in(client, VIEWER_TOKEN)
    for path in ("/tokens", "/audit"):
        response = client.get(path)
        assert response.status_code == 403 and 'data-testid="readonly-notice"' in response.text
    assert not [p for _, p, _ in fake.calls if p in ("/api/tokens", "/api/audit")]
    nav = client.get("/agents").text
    assert "nav-tokens" not in nav and "nav-audit" not in nav and "nav-providers" in nav


def _entry(i: int, actor: str, action: str) -> dict[str, Any]:
    return {
        "id": f"{1000 - i}-0",
        "at": "2026-12-04T20:00:00+00:00",
        "actor_id": actor,
        "actor_name": f"{actor} person",
        "actor_role": "admin",
        "action": action,
        "target": f"t{i}",
        "before": None,
        "after": {"n": i},
    }


def test_audit_is_filtered_by_actor_and_kind_and_paged(client: TestClient, fake: FakeAdmin) -> None:
    # 300 entries, newest first: every third by "alice", alternating provider and agent actions.
    fake.audit = [
        _entry(
            i, "alice" if i % 3 == 0 else "bob", "provider.register" if i % 2 else "agent.create"
        )
        for i in range(300)
    ]
    sign_in(client, ADMIN_TOKEN)
    first = client.get("/audit").text
    assert first.count('data-testid="audit-row"') == 50
    assert 'data-target="t0"' in first and 'data-target="t49"' in first
    older = client.get("/audit?before=951-0").text
    assert 'data-target="t49"' not in older and 'data-target="t50"' in older
    filtered = client.get("/audit", params={"actor": "ALICE", "kind": "agent"}).text
    targets = [f"t{i}" for i in range(300) if i % 3 == 0 and i % 2 == 0]
    assert filtered.count('data-testid="audit-row"') == len(targets) == 50
    # The page is full, so it links older entries; there are none left that match.
    older_link = re.search(r'href="([^"]+)" data-testid="audit-older"', filtered)
    assert older_link is not None
    rest = client.get(older_link.group(1).replace("&amp;", "&")).text
    assert "No entries match this filter" in rest and 'data-testid="audit-older"' not in rest
    assert "bob person" not in filtered and "provider.register" not in filtered
    by_action = client.get("/audit", params={"kind": "provider.register", "actor": "bob"}).text
    assert "agent.create</code>" not in by_action
    assert 'data-testid="audit-older"' in by_action
    none = client.get("/audit", params={"actor": "carol"}).text
    assert "No entries match this filter" in none


def test_bad_audit_filters_are_refused_naming_the_field(client: TestClient) -> None:
    sign_in(client, ADMIN_TOKEN)
    for params, message in [
        ({"kind": "Provider!"}, "kind: an action"),
        ({"actor": "a\x01"}, "actor: at most 100 printable"),
        ({"before": "not-a-cursor"}, "before: not a page"),
    ]:
        response = client.get("/audit", params=params)
        assert response.status_code == 422 and message in response.text


def test_a_revoked_token_ends_the_session_on_the_console_pages(
    client: TestClient, fake: FakeAdmin
) -> None:
    sign_in(client, ADMIN_TOKEN)
    fake.revoked.add(ADMIN_TOKEN)
    for path in ("/providers", "/tokens"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] in ("/login?notice=expired", "/login?next=/tokens")
    assert client.get("/providers/live").status_code == 401


def test_console_forms_need_the_csrf_token(client: TestClient, fake: FakeAdmin) -> None:
    sign_in(client, ADMIN_TOKEN)
    for path in ("/providers", "/agents", "/tokens", "/providers/device", "/agents/my-agent/keys"):
        assert client.post(path, data={"name": "x", "id": "x"}).status_code == 403, path
    assert _changes(fake) == []
    assert csrf_of(client.get("/providers").text)


def test_the_snippets_parse_and_name_the_public_router() -> None:
    settings = make_settings(UI_ROUTER_PUBLIC_URL="https://router.example.com/")
    assert settings.router_public_url == "https://router.example.com"
    with pytest.raises(ValidationError, match="must be an http"):
        make_settings(UI_ROUTER_PUBLIC_URL="router.example.com")
    python = agent_page.openai_snippet(settings.router_public_url, "cpk_abc")
    compile(python, "snippet.py", "exec")
    assert 'base_url="https://router.example.com/v1", api_key="cpk_abc"' in python
    toml = tomllib.loads(agent_page.codex_snippet(settings.router_public_url))
    assert toml["model_provider"] == "codexpool"
    provider = toml["model_providers"]["codexpool"]
    assert provider["base_url"] == "https://router.example.com/v1"
    assert (provider["wire_api"], provider["env_key"]) == ("responses", agent_page.KEY_ENV)


def test_agent_limits_are_shown_and_saved(client: TestClient, fake: FakeAdmin) -> None:
    csrf = sign_in(client, ADMIN_TOKEN)
    page = client.get("/agents/my-agent").text
    assert 'data-testid="limits-form"' in page and "no limit" in page
    saved = client.post(
        "/agents/my-agent/limits",
        data={
            "csrf_token": csrf,
            "requests_per_minute": "3",
            "tokens_per_day": "",
            "models": "gpt-5, gpt-5-codex",
            "expires_at": "2030-01-01T00:00",
        },
    )
    assert saved.headers["location"] == "/agents/my-agent?notice=limits-saved"
    assert fake.bodies[-1] == {
        "limits": {
            "requests_per_minute": 3,
            "tokens_per_day": None,
            "models": ["gpt-5", "gpt-5-codex"],
            "expires_at": "2030-01-01T00:00Z",
        }
    }
    shown = client.get("/agents/my-agent").text
    assert "gpt-5, gpt-5-codex" in shown and 'value="3"' in shown
    bad = client.post(
        "/agents/my-agent/limits", data={"csrf_token": csrf, "requests_per_minute": "lots"}
    )
    assert bad.status_code == 422 and "requests_per_minute: a whole number" in bad.text
    refused = client.post(
        "/agents/my-agent/limits", data={"csrf_token": csrf, "requests_per_minute": "0"}
    )
    assert refused.status_code == 422 and "limits.requests_per_minute" in refused.text
    sign_in(client, VIEWER_TOKEN)
    assert 'data-testid="limits-form"' not in client.get("/agents/my-agent").text


def test_the_activity_shows_in_flight_against_the_cap(client: TestClient, fake: FakeAdmin) -> None:
    one, two = "chatgpt-oauth-account-1", "chatgpt-oauth-account-2"
    fake.pools["my-agent"] = {"strategy": "round-robin", "providers": [one, two], "version": 1}
    fake.row(one).update(in_flight=1, max_concurrent=2)
    sign_in(client, VIEWER_TOKEN)
    page = client.get("/agents/my-agent/codex-pool").text
    assert f'data-testid="in-flight-{one}"' in page and "1 of 2 in flight" in page
    assert f'data-testid="in-flight-{two}"' not in page
