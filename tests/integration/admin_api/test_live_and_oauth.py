from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import redis
from fastapi.testclient import TestClient

from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.testing.messaging import InMemoryPublisher
from codexpool_sim.app import SimApp
from tests.integration.admin_api.helpers import create_agent, error

POOL = "/api/agents/my-agent/codex-pool"


def _register_sim_accounts(api: TestClient, sim: SimApp) -> list[Any]:
    accounts = sorted(sim.accounts, key=lambda a: a.index)
    for account in accounts:
        body = {"name": f"chatgpt-oauth-{account.name}", "auth_json": account.auth_json()}
        assert api.post("/api/providers", json=body).status_code == 201
    return accounts


def test_refresh_live_state_returns_the_quota_the_sim_holds(
    sim_api: TestClient, sim: SimApp, sim_admin: TestClient
) -> None:
    accounts = _register_sim_accounts(sim_api, sim)
    names = [f"chatgpt-oauth-{a.name}" for a in accounts]
    create_agent(sim_api)
    sim_api.put(POOL, json={"strategy": "round-robin", "providers": names})
    for account, (primary, secondary) in zip(accounts, [(42, 5), (77, 9)], strict=True):
        patch = {"primary_used_percent": primary, "secondary_used_percent": secondary}
        assert sim_admin.patch(f"/_sim/accounts/{account.account_id}", json=patch).is_success
    refreshed = sim_api.post(f"{POOL}/refresh")
    assert refreshed.status_code == 200, refreshed.text
    rows = {r["provider"]: r for r in refreshed.json()["providers"]}
    held = {a["account_id"]: a for a in sim_admin.get("/_sim/accounts").json()["accounts"]}
    for account, name in zip(accounts, names, strict=True):
        quota, sim_quota = rows[name]["quota"], held[account.account_id]["quota"]
        assert rows[name]["refresh_error"] is None
        for window in ("primary", "secondary"):
            assert quota[window]["used_percent"] == round(sim_quota[window]["used_percent"])
            assert quota[window]["resets_at"] == sim_quota[window]["reset_at"]
            assert quota[window]["window_minutes"] == sim_quota[window]["window_minutes"]
        assert quota["plan_type"] == account.plan_type
    assert [rows[n]["quota"]["primary"]["used_percent"] for n in names] == [42, 77]
    again = sim_api.get(f"{POOL}/activity").json()
    assert again["providers"][0]["quota"]["primary"]["used_percent"] == 42


def test_one_failing_member_does_not_fail_the_refresh(
    sim_api: TestClient, sim: SimApp, sim_admin: TestClient
) -> None:
    accounts = _register_sim_accounts(sim_api, sim)
    names = [f"chatgpt-oauth-{a.name}" for a in accounts]
    create_agent(sim_api)
    sim_api.put(POOL, json={"strategy": "round-robin", "providers": names})
    # Revoked access token and refresh token: the one refresh attempt is refused too.
    revoke = {"revoke_access_token": True, "refresh_token_state": "invalidated"}
    assert sim_admin.patch(f"/_sim/accounts/{accounts[1].account_id}", json=revoke).is_success
    rows = sim_api.post(f"{POOL}/refresh").json()["providers"]
    assert rows[0]["refresh_error"] is None and rows[0]["quota"] is not None
    assert rows[1]["quota"] is None
    assert "refused the token" in rows[1]["refresh_error"]
    assert "refresh failed" in rows[1]["refresh_error"]
    assert accounts[1].tokens.access_token not in str(rows)
    assert sim_api.get(f"/api/providers/{names[1]}").json()["status"] == "needs_reauth"


def _refreshes(sim_admin: TestClient, account_id: str) -> dict[str, Any]:
    counts: dict[str, Any] = sim_admin.get("/_sim/refreshes").json()["accounts"][account_id]
    return counts


def test_an_expired_token_is_refreshed_once_then_the_quota_read(
    sim_api: TestClient,
    sim: SimApp,
    sim_admin: TestClient,
    sink: InMemoryPublisher,
) -> None:
    accounts = _register_sim_accounts(sim_api, sim)
    names = [f"chatgpt-oauth-{a.name}" for a in accounts]
    create_agent(sim_api)
    sim_api.put(POOL, json={"strategy": "round-robin", "providers": names})
    expired = accounts[0]
    patch = {"expire_access_token": True, "primary_used_percent": 33}
    assert sim_admin.patch(f"/_sim/accounts/{expired.account_id}", json=patch).is_success
    before = sim_api.get(f"/api/providers/{names[0]}").json()
    # The usage endpoint answers 401; the member's token is refreshed once and the read retried.
    refreshed = sim_api.post(f"{POOL}/refresh")
    assert refreshed.status_code == 200, refreshed.text
    rows = {r["provider"]: r for r in refreshed.json()["providers"]}
    assert rows[names[0]]["refresh_error"] is None
    assert rows[names[0]]["quota"]["primary"]["used_percent"] == 33
    counts = _refreshes(sim_admin, expired.account_id)
    assert (counts["refreshes"], counts["reused"], counts["rejected"]) == (1, 0, 0)
    assert _refreshes(sim_admin, accounts[1].account_id)["refreshes"] == 0
    after = sim_api.get(f"/api/providers/{names[0]}").json()
    assert after["credential_version"] == before["credential_version"] + 1
    assert after["status"] == "active"
    assert not any(isinstance(e, ProviderStatusChangedV1) for e in sink.events)
    # The stored tokens are the rotated ones: the next read needs no refresh.
    again = sim_api.post(f"{POOL}/refresh").json()["providers"]
    assert all(row["refresh_error"] is None for row in again)
    assert _refreshes(sim_admin, expired.account_id)["refreshes"] == 1
    assert (
        sim_api.get(f"/api/providers/{names[0]}").json()["credential_version"]
        == (after["credential_version"])
    )


def test_a_token_about_to_expire_is_refreshed_before_the_read(
    sim_api: TestClient, sim: SimApp, sim_admin: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    accounts = _register_sim_accounts(sim_api, sim)
    names = [f"chatgpt-oauth-{a.name}" for a in accounts]
    create_agent(sim_api)
    sim_api.put(POOL, json={"strategy": "round-robin", "providers": names})
    # The stored expiry says the token expires in 10 s (within the refresh-ahead window).
    sync_redis.hset(keys.provider(names[1]), "access_expires_at", int(time.time()) + 10)
    version = sim_api.get(f"/api/providers/{names[1]}").json()["credential_version"]
    rows = sim_api.post(f"{POOL}/refresh").json()["providers"]
    assert all(row["refresh_error"] is None for row in rows)
    assert _refreshes(sim_admin, accounts[1].account_id)["refreshes"] == 1
    assert _refreshes(sim_admin, accounts[0].account_id)["refreshes"] == 0
    provider = sim_api.get(f"/api/providers/{names[1]}").json()
    assert provider["credential_version"] == version + 1
    expires = datetime.fromisoformat(provider["access_expires_at"]).timestamp()
    assert expires > time.time() + 60


def _start(api: TestClient, name: str) -> dict[str, Any]:
    started = api.post(f"/api/providers/{name}/oauth/device")
    assert started.status_code == 201, started.text
    body: dict[str, Any] = started.json()
    return body


def _everything_stored(client: redis.Redis, namespace: str) -> str:
    """Every hash, string and stream of the namespace, as one text to search."""
    out: list[object] = []
    for key in client.scan_iter(match=Keys(namespace).pattern):
        kind = client.type(key)
        if kind == b"hash":
            out.append(client.hgetall(key))
        elif kind == b"string":
            out.append(client.get(key))
        elif kind == b"stream":
            out.append(client.xrange(key))
    return repr(out)


def test_device_code_relink_stores_new_tokens_and_activates(
    sim_api: TestClient,
    sim: SimApp,
    sim_admin: TestClient,
    sink: InMemoryPublisher,
    sync_redis: redis.Redis,
    keys: Keys,
) -> None:
    accounts = _register_sim_accounts(sim_api, sim)
    name = "chatgpt-oauth-account-1"
    registered_access = accounts[0].tokens.access_token
    sim_api.patch(f"/api/providers/{name}", json={"status": "disabled"})
    version = sim_api.get(f"/api/providers/{name}").json()["credential_version"]
    started = _start(sim_api, name)
    assert started["verification_uri"] == "http://sim/codex/device"
    poll = sim_api.post(f"/api/providers/{name}/oauth/device/poll")
    assert poll.json() == {"status": "pending", "provider": None}
    approve = {"account_id": accounts[0].account_id}
    assert sim_admin.post(f"/_sim/device-codes/{started['user_code']}/approve", json=approve)
    linked = sim_api.post(f"/api/providers/{name}/oauth/device/poll").json()
    assert linked["status"] == "linked"
    assert linked["provider"]["status"] == "active"
    assert linked["provider"]["credential_version"] == version + 1
    event = sink.events[-1]
    assert isinstance(event, ProviderStatusChangedV1)
    assert (event.previous, event.current, event.reason) == ("disabled", "active", "relinked")
    assert "access_token" not in str(linked)
    # The new tokens are stored, encrypted: no plaintext anywhere in Redis or in the answer.
    fresh = accounts[0].tokens
    assert fresh.access_token != registered_access
    stored = _everything_stored(sync_redis, keys.namespace)
    assert "credential_version" in stored and "provider.oauth.relink" in stored
    for secret in (fresh.access_token, fresh.refresh_token, fresh.id_token):
        assert secret not in stored
        assert secret not in str(linked)
    # The login is complete: a second poll has nothing to finish.
    gone = sim_api.post(f"/api/providers/{name}/oauth/device/poll")
    assert gone.status_code == 404 and error(gone)["code"] == "device_login_not_found"
    assert [e["action"] for e in sim_api.get("/api/audit").json()["data"][:2]] == [
        "provider.oauth.relink",
        "provider.oauth.start",
    ]


def test_device_login_of_another_account_is_refused(
    sim_api: TestClient, sim: SimApp, sim_admin: TestClient
) -> None:
    accounts = _register_sim_accounts(sim_api, sim)
    name = "chatgpt-oauth-account-1"
    before = sim_api.get(f"/api/providers/{name}").json()
    started = _start(sim_api, name)
    approve = {"account_id": accounts[1].account_id}
    sim_admin.post(f"/_sim/device-codes/{started['user_code']}/approve", json=approve)
    refused = sim_api.post(f"/api/providers/{name}/oauth/device/poll")
    assert refused.status_code == 409 and error(refused)["code"] == "account_mismatch"
    assert sim_api.get(f"/api/providers/{name}").json() == before
    assert sim_api.post("/api/providers/ghost/oauth/device").status_code == 404


def test_device_code_registers_a_new_provider(
    sim_api: TestClient, sim: SimApp, sim_admin: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    account = sorted(sim.accounts, key=lambda a: a.index)[0]
    name = "signed-in-account"
    assert sim_api.post(f"/api/providers/{name}/oauth/device").status_code == 404
    started = sim_api.post(f"/api/providers/{name}/oauth/device", json={"register": True})
    assert started.status_code == 201, started.text
    poll = sim_api.post(f"/api/providers/{name}/oauth/device/poll")
    assert poll.json() == {"status": "pending", "provider": None}
    assert sim_api.get(f"/api/providers/{name}").status_code == 404
    approve = {"account_id": account.account_id}
    sim_admin.post(f"/_sim/device-codes/{started.json()['user_code']}/approve", json=approve)
    linked = sim_api.post(f"/api/providers/{name}/oauth/device/poll").json()
    assert linked["status"] == "linked"
    assert linked["provider"]["account_id"] == account.account_id
    assert linked["provider"]["status"] == "active"
    stored = _everything_stored(sync_redis, keys.namespace)
    for secret in (account.tokens.access_token, account.tokens.refresh_token):
        assert secret not in stored and secret not in str(linked)
    [registered, start] = sim_api.get("/api/audit").json()["data"][:2]
    assert (registered["action"], registered["after"]["via"]) == (
        "provider.register",
        "device_code",
    )
    assert (start["action"], start["after"]["register"]) == ("provider.oauth.start", True)
    # The name is taken now, and a bad name is refused by field.
    taken = sim_api.post(f"/api/providers/{name}/oauth/device", json={"register": True})
    assert taken.status_code == 409 and error(taken)["param"] == "name"
    bad = sim_api.post("/api/providers/Not%20A%20Slug/oauth/device", json={"register": True})
    assert bad.status_code == 422 and error(bad)["param"] == "name"
