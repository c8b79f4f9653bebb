from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from codexpool_shared.events import PoolChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.store.agents import key_digest
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.admin_api.helpers import create_agent, error, register, viewer_headers

POOL = "/api/agents/my-agent/codex-pool"


def test_agent_key_is_shown_once_and_rotation_revokes_the_old_one(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    created = create_agent(api)
    first = created["api_key"]
    assert first.startswith("cpk_")
    assert created["name"] == "My agent"
    assert sync_redis.get(keys.api_key(key_digest(first))) == b"my-agent"
    shown = api.get("/api/agents/my-agent").json()
    assert first not in str(shown) and len(shown["keys"]) == 1
    rotated = api.post("/api/agents/my-agent/keys", json={"revoke_others": True})
    assert rotated.status_code == 201
    second = rotated.json()["api_key"]
    assert rotated.json()["revoked"] == [shown["keys"][0]["key_id"]]
    assert sync_redis.get(keys.api_key(key_digest(first))) is None
    assert sync_redis.get(keys.api_key(key_digest(second))) == b"my-agent"
    added = api.post("/api/agents/my-agent/keys")
    assert added.status_code == 201 and added.json()["revoked"] == []
    assert len(api.get("/api/agents/my-agent").json()["keys"]) == 2
    assert [a["id"] for a in api.get("/api/agents").json()["data"]] == ["my-agent"]
    assert api.post("/api/agents", json={"id": "my-agent"}).status_code == 409
    assert api.delete("/api/agents/my-agent").status_code == 204
    assert sync_redis.get(keys.api_key(key_digest(second))) is None
    assert error(api.get("/api/agents/my-agent"))["param"] == "agent_id"


def test_one_router_key_is_revoked_by_its_id(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    first = create_agent(api)["api_key"]
    second = api.post("/api/agents/my-agent/keys").json()
    [old] = [
        k for k in api.get("/api/agents/my-agent").json()["keys"] if k["key_id"] != second["key_id"]
    ]
    # A prefix of an id names no key: only whole ids revoke.
    for wrong in (old["key_id"][:4], "0" * 12):
        refused = api.delete(f"/api/agents/my-agent/keys/{wrong}")
        assert refused.status_code == 404 and error(refused)["param"] == "key_id"
    assert api.delete(f"/api/agents/my-agent/keys/{old['key_id']}").status_code == 204
    assert sync_redis.get(keys.api_key(key_digest(first))) is None
    assert sync_redis.get(keys.api_key(key_digest(second["api_key"]))) == b"my-agent"
    assert [k["key_id"] for k in api.get("/api/agents/my-agent").json()["keys"]] == [
        second["key_id"]
    ]
    entry = api.get("/api/audit").json()["data"][0]
    assert (entry["action"], entry["target"]) == ("agent.key.revoke", "my-agent")
    assert entry["before"]["key"]["key_id"] == old["key_id"]
    assert api.delete("/api/agents/ghost/keys/abc").status_code == 404


def test_pool_changes_bump_version_publish_and_audit(
    api: TestClient, sink: InMemoryPublisher
) -> None:
    register(api, "acct-1")
    register(api, "acct-2")
    create_agent(api)
    put = api.put(POOL, json={"strategy": "round-robin", "providers": ["acct-1", "acct-2"]})
    assert put.status_code == 200, put.text
    assert put.json() == {
        "agent_id": "my-agent",
        "strategy": "round-robin",
        "providers": ["acct-1", "acct-2"],
        "version": 1,
        "priorities": {},
        "prefer_earliest_reset": False,
        "overflow": None,
    }
    removed = api.delete(f"{POOL}/providers/acct-1")
    assert removed.json()["providers"] == ["acct-2"] and removed.json()["version"] == 2
    added = api.post(f"{POOL}/providers", json={"provider": "acct-1", "position": 0})
    assert added.status_code == 201
    assert added.json()["providers"] == ["acct-1", "acct-2"] and added.json()["version"] == 3
    assert api.get(POOL).json()["version"] == 3
    events = [e for e in sink.events if isinstance(e, PoolChangedV1)]
    assert [(e.change, e.version, e.providers) for e in events] == [
        ("created", 1, ("acct-1", "acct-2")),
        ("member_removed", 2, ("acct-2",)),
        ("member_added", 3, ("acct-1", "acct-2")),
    ]
    audit = api.get("/api/audit").json()["data"]
    pool_entries = [e for e in audit if e["action"].startswith("pool.")]
    assert [e["action"] for e in pool_entries] == [
        "pool.member_added",
        "pool.member_removed",
        "pool.created",
    ]
    assert pool_entries[1]["before"]["providers"] == ["acct-1", "acct-2"]
    assert pool_entries[1]["after"]["providers"] == ["acct-2"]


def test_bad_pools_are_refused_naming_the_field_and_change_nothing(
    api: TestClient, sink: InMemoryPublisher
) -> None:
    register(api, "acct-1")
    create_agent(api)
    api.put(POOL, json={"strategy": "primary-first", "providers": ["acct-1"]})
    cases = [
        ({"strategy": "random", "providers": ["acct-1"]}, "strategy"),
        ({"strategy": "round-robin", "providers": []}, "providers"),
        ({"strategy": "round-robin", "providers": ["acct-1", "acct-1"]}, "providers[1]"),
        ({"strategy": "round-robin", "providers": ["acct-1", "ghost"]}, "providers[1]"),
        ({"strategy": "round-robin", "providers": ["acct-1"], "extra": 1}, "extra"),
    ]
    for body, param in cases:
        response = api.put(POOL, json=body)
        assert response.status_code == 422, (body, response.text)
        assert error(response)["param"] == param
    duplicate = api.post(f"{POOL}/providers", json={"provider": "acct-1"})
    assert duplicate.status_code == 409 and error(duplicate)["param"] == "provider"
    unknown = api.post(f"{POOL}/providers", json={"provider": "ghost"})
    assert unknown.status_code == 422 and error(unknown)["param"] == "provider"
    not_member = api.delete(f"{POOL}/providers/ghost")
    assert not_member.status_code == 404 and error(not_member)["param"] == "name"
    no_agent = api.put(
        "/api/agents/nobody/codex-pool", json={"strategy": "round-robin", "providers": ["acct-1"]}
    )
    assert no_agent.status_code == 404 and error(no_agent)["param"] == "agent_id"
    assert api.get(POOL).json()["version"] == 1
    assert len([e for e in sink.events if isinstance(e, PoolChangedV1)]) == 1


def test_activity_shows_members_and_oauth_details_only_to_admins(api: TestClient) -> None:
    register(api, "acct-1")
    register(api, "acct-2")
    create_agent(api)
    api.put(POOL, json={"strategy": "round-robin", "providers": ["acct-2", "acct-1"]})
    activity = api.get(f"{POOL}/activity")
    assert activity.status_code == 200, activity.text
    body = activity.json()
    assert (body["agent_id"], body["strategy"], body["version"]) == ("my-agent", "round-robin", 1)
    rows = body["providers"]
    assert [r["provider"] for r in rows] == ["acct-2", "acct-1"]
    assert rows[0]["status"] == "active"
    assert rows[0]["requests"] == 0 and rows[0]["success_rate"] is None
    assert len(rows[0]["timeline"]) == 60
    assert rows[0]["quota"] is None and rows[0]["circuit"] == "closed"
    assert rows[0]["oauth"]["email"] == "acct-2@example.com"
    viewer = api.get(f"{POOL}/activity", headers=viewer_headers(api)).json()
    assert all(r["oauth"] is None for r in viewer["providers"])
    assert "example.com" not in str(viewer)


def test_viewers_see_agents_without_key_details(api: TestClient) -> None:
    created = create_agent(api)
    assert created["keys"][0]["prefix"] == created["api_key"][:8]
    viewer = viewer_headers(api)
    one = api.get("/api/agents/my-agent", headers=viewer).json()
    assert one["keys"] is None and "api_key" not in one
    assert api.get("/api/agents", headers=viewer).json()["data"][0]["keys"] is None


def test_deleting_an_agent_deletes_its_pool_and_says_so(
    api: TestClient, sink: InMemoryPublisher
) -> None:
    register(api, "acct-1")
    create_agent(api)
    api.put(POOL, json={"strategy": "quota-aware", "providers": ["acct-1"]})
    assert api.delete("/api/agents/my-agent").status_code == 204
    event = sink.events[-1]
    assert isinstance(event, PoolChangedV1)
    assert (event.change, event.strategy, event.providers) == ("deleted", None, ())
    assert api.get(POOL).status_code == 404


@pytest.mark.parametrize("name", ["nul\x00byte", "escape\x1b[2J", "line\r\nbreak"])
def test_names_with_control_characters_are_refused(api: TestClient, name: str) -> None:
    agent = api.post("/api/agents", json={"id": "ctl", "name": name})
    assert agent.status_code == 422, agent.text
    assert error(agent)["param"] == "name"
    token = api.post("/api/tokens", json={"name": name, "role": "viewer"})
    assert token.status_code == 422, token.text
    assert error(token)["param"] == "name"
    assert api.get("/api/agents").json()["data"] == []


def test_a_rotation_flag_must_be_a_boolean(api: TestClient) -> None:
    create_agent(api, "strict")
    refused = api.post("/api/agents/strict/keys", json={"revoke_others": 0})
    assert refused.status_code == 422, refused.text
    assert error(refused)["param"] == "revoke_others"
    assert api.post("/api/agents/strict/keys", json={"revoke_others": True}).status_code == 201
