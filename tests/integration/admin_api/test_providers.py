from __future__ import annotations

import asyncio
from typing import cast

import redis
from fastapi.testclient import TestClient

from codexpool_shared.events import PoolChangedV1, ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.redis import open_redis
from codexpool_shared.store import set_provider_status
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.admin_api.helpers import create_agent, error, register, viewer_headers
from tests.integration.admin_api.tokens import auth_json, jwt
from tests.integration.conftest import RedisTarget


def test_register_reads_claims_and_stores_tokens_encrypted(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    doc = auth_json("acct-1", plan="pro")
    response = api.post("/api/providers", json={"name": "acct-1", "auth_json": doc})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["account_id"] == "acc-acct-1"
    assert body["email"] == "acct-1@example.com"
    assert body["plan_type"] == "pro"
    assert body["status"] == "active"
    assert body["access_expires_at"] is not None
    stored = cast(dict[bytes, bytes], sync_redis.hgetall(keys.provider("acct-1")))
    for field in ("access_token", "refresh_token", "id_token"):
        plaintext = doc["tokens"][field]
        assert plaintext not in response.text
        assert stored[field.encode()].startswith(b"v1:")
        assert plaintext.encode() not in stored[field.encode()]


def test_register_from_tokens(api: TestClient) -> None:
    tokens = auth_json("acct-2")["tokens"]
    response = api.post("/api/providers", json={"name": "acct-2", "tokens": tokens})
    assert response.status_code == 201, response.text
    assert response.json()["account_id"] == "acc-acct-2"
    missing = dict(tokens, access_token="")
    refused = api.post("/api/providers", json={"name": "acct-3", "tokens": missing})
    assert refused.status_code == 422
    assert error(refused)["param"] == "tokens.access_token"


def test_malformed_auth_json_is_refused_naming_the_field(api: TestClient) -> None:
    cases = {
        "auth_json.tokens": {"name": "bad", "auth_json": {"OPENAI_API_KEY": None}},
        "auth_json.tokens.refresh_token": {
            "name": "bad",
            "auth_json": {"tokens": {"access_token": "x.y.z", "account_id": "a"}},
        },
        "auth_json": {"name": "bad"},
        "name": {"name": "Not A Slug!", "auth_json": auth_json("x")},
    }
    for param, body in cases.items():
        response = api.post("/api/providers", json=body)
        assert response.status_code == 422, (param, response.text)
        assert error(response)["param"] == param
    assert api.get("/api/providers").json() == {"data": []}


def test_identities_that_would_break_a_header_are_refused(api: TestClient) -> None:
    injected = "a\r\nX-Injected: yes"
    by_field = auth_json("inj")
    by_field["tokens"]["account_id"] = injected
    by_claim = auth_json("inj")
    del by_claim["tokens"]["account_id"]
    by_claim["tokens"]["id_token"] = jwt(
        {"email": "x@example.com", "https://api.openai.com/auth": {"chatgpt_account_id": injected}}
    )
    by_email = auth_json("inj")
    by_email["tokens"]["id_token"] = jwt({"email": "x@example.com\x1b[2J"})
    for doc, param in (
        (by_field, "auth_json.tokens.account_id"),
        (by_claim, "auth_json.tokens.account_id"),
        (by_email, "auth_json.tokens.email"),
    ):
        response = api.post("/api/providers", json={"name": "inj", "auth_json": doc})
        assert response.status_code == 422, response.text
        assert error(response)["param"] == param
    assert api.get("/api/providers").json() == {"data": []}


def test_duplicate_name_is_a_conflict(api: TestClient) -> None:
    register(api, "acct-1")
    again = api.post("/api/providers", json={"name": "acct-1", "auth_json": auth_json("acct-1")})
    assert again.status_code == 409
    assert error(again)["param"] == "name"


def test_viewers_see_no_oauth_link_details(api: TestClient) -> None:
    register(api, "acct-1")
    viewer = viewer_headers(api)
    one = api.get("/api/providers/acct-1", headers=viewer).json()
    assert one == {
        "name": "acct-1",
        "status": "active",
        "plan_type": "plus",
        "created_at": one["created_at"],
        "max_concurrent": None,
    }
    listed = api.get("/api/providers", headers=viewer).json()["data"]
    assert "email" not in listed[0] and "account_id" not in listed[0]
    admin_view = api.get("/api/providers/acct-1").json()
    assert admin_view["email"] == "acct-1@example.com"
    assert api.get("/api/providers/nope").status_code == 404


def test_disable_publishes_status_change_and_blocks_pool_membership(
    api: TestClient, sink: InMemoryPublisher
) -> None:
    register(api, "acct-1")
    create_agent(api)
    patched = api.patch("/api/providers/acct-1", json={"status": "disabled"})
    assert patched.status_code == 200
    assert patched.json()["status"] == "disabled"
    event = sink.events[-1]
    assert isinstance(event, ProviderStatusChangedV1)
    assert (event.previous, event.current, event.actor) == ("active", "disabled", "bootstrap")
    put = api.put(
        "/api/agents/my-agent/codex-pool", json={"strategy": "round-robin", "providers": ["acct-1"]}
    )
    assert put.status_code == 422
    assert error(put)["param"] == "providers[0]"
    bad_status = api.patch("/api/providers/acct-1", json={"status": "needs_reauth"})
    assert bad_status.status_code == 422
    assert error(bad_status)["param"] == "status"


def test_delete_in_pool_needs_force_and_force_removes_it_everywhere(
    api: TestClient, sink: InMemoryPublisher
) -> None:
    register(api, "acct-1")
    register(api, "acct-2")
    for agent in ("agent-a", "agent-b"):
        create_agent(api, agent)
        api.put(
            f"/api/agents/{agent}/codex-pool",
            json={"strategy": "round-robin", "providers": ["acct-1", "acct-2"]},
        )
    refused = api.delete("/api/providers/acct-1")
    assert refused.status_code == 409
    assert "agent-a" in error(refused)["message"] and "agent-b" in error(refused)["message"]
    assert api.get("/api/providers/acct-1").status_code == 200
    assert api.delete("/api/providers/acct-1", params={"force": "true"}).status_code == 204
    assert api.get("/api/providers/acct-1").status_code == 404
    for agent in ("agent-a", "agent-b"):
        pool = api.get(f"/api/agents/{agent}/codex-pool").json()
        assert pool["providers"] == ["acct-2"]
        assert pool["version"] == 2
    removed = [
        e for e in sink.events if isinstance(e, PoolChangedV1) and e.change == "member_removed"
    ]
    assert {e.agent_id for e in removed} == {"agent-a", "agent-b"}
    assert api.delete("/api/providers/acct-2", params={"force": "true"}).status_code == 204


def test_needs_reauth_is_left_by_relinking_not_by_patching(
    api: TestClient, redis_target: RedisTarget, keys: Keys
) -> None:
    register(api, "acct-1")

    async def mark() -> None:
        client = await open_redis(redis_target.settings(keys.namespace))
        try:
            await set_provider_status(client, keys, "acct-1", "needs_reauth")
        finally:
            await client.aclose()

    asyncio.run(mark())
    refused = api.patch("/api/providers/acct-1", json={"status": "active"})
    assert refused.status_code == 409
    assert error(refused)["code"] == "needs_reauth"
    assert "/oauth/device" in error(refused)["message"]
    assert api.patch("/api/providers/acct-1", json={"status": "disabled"}).status_code == 200


def test_forced_delete_is_one_change_per_pool_published_and_audited(
    api: TestClient, sink: InMemoryPublisher
) -> None:
    register(api, "acct-1")
    register(api, "acct-2")
    for agent, members in (
        ("agent-a", ["acct-1", "acct-2"]),
        ("agent-b", ["acct-2", "acct-1"]),
        ("agent-c", ["acct-2"]),
    ):
        create_agent(api, agent)
        api.put(
            f"/api/agents/{agent}/codex-pool",
            json={"strategy": "round-robin", "providers": members},
        )
    refused = api.delete("/api/providers/acct-1")
    assert (refused.status_code, error(refused)["code"]) == (409, "provider_in_use")
    assert "agent-a, agent-b" in error(refused)["message"]
    assert not [e for e in sink.events if isinstance(e, PoolChangedV1) and e.change != "created"]

    assert api.delete("/api/providers/acct-1", params={"force": "true"}).status_code == 204
    assert api.get("/api/providers/acct-1").status_code == 404
    assert api.delete("/api/providers/acct-1", params={"force": "true"}).status_code == 404
    removed = [
        e for e in sink.events if isinstance(e, PoolChangedV1) and e.change == "member_removed"
    ]
    assert sorted((e.agent_id, e.version, e.providers) for e in removed) == [
        ("agent-a", 2, ("acct-2",)),
        ("agent-b", 2, ("acct-2",)),
    ]
    assert api.get("/api/agents/agent-c/codex-pool").json()["version"] == 1
    audit = api.get("/api/audit").json()["data"]
    actions = [(e["action"], e["target"]) for e in audit[:3]]
    assert sorted(actions) == [
        ("pool.member_removed", "agent-a"),
        ("pool.member_removed", "agent-b"),
        ("provider.delete", "acct-1"),
    ]
    assert audit[0]["action"] == "provider.delete" and audit[0]["before"]["name"] == "acct-1"
    pool_entries = {e["target"]: e for e in audit[1:3]}
    assert pool_entries["agent-b"]["before"]["providers"] == ["acct-2", "acct-1"]
    assert pool_entries["agent-b"]["after"] == {
        "agent_id": "agent-b",
        "strategy": "round-robin",
        "providers": ["acct-2"],
        "version": 2,
        "priorities": {},
        "prefer_earliest_reset": False,
        "overflow": None,
    }
