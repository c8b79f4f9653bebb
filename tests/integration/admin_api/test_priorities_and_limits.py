"""Member priorities (PUT codex-pool) and agent limits (PATCH agent) through the admin API."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient

from codexpool_shared.keys import Keys
from tests.integration.admin_api.helpers import create_agent, error, register

POOL = "/api/agents/my-agent/codex-pool"


def test_priorities_are_set_shown_audited_and_validated(api: TestClient) -> None:
    for name in ("acct-1", "acct-2"):
        register(api, name)
    create_agent(api)
    body = {
        "strategy": "quota-aware",
        "providers": ["acct-1", "acct-2"],
        "priorities": {"acct-1": "preserve", "acct-2": "normal"},
        "prefer_earliest_reset": True,
    }
    put = api.put(POOL, json=body)
    assert put.status_code == 200, put.text
    assert put.json()["priorities"] == {"acct-1": "preserve"}
    assert put.json()["prefer_earliest_reset"] is True
    assert api.get(POOL).json()["priorities"] == {"acct-1": "preserve"}
    entry = api.get("/api/audit").json()["data"][0]
    assert entry["after"]["priorities"] == {"acct-1": "preserve"}
    cases = [
        ({**body, "priorities": {"acct-1": "sometimes"}}, "priorities.acct-1"),
        ({**body, "priorities": {"ghost": "preserve"}}, "priorities.ghost"),
        ({**body, "strategy": "round-robin"}, "prefer_earliest_reset"),
    ]
    for bad, param in cases:
        response = api.put(POOL, json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert error(response)["param"] == param, response.text
    assert api.get(POOL).json()["version"] == 1
    # Without priorities a PUT makes every member normal again.
    plain = api.put(POOL, json={"strategy": "round-robin", "providers": ["acct-1", "acct-2"]})
    assert plain.json()["priorities"] == {} and plain.json()["prefer_earliest_reset"] is False


def test_agent_limits_are_patched_shown_audited_and_validated(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    create_agent(api)
    assert api.get("/api/agents/my-agent").json()["limits"] == {
        "requests_per_minute": None,
        "tokens_per_day": None,
        "models": None,
        "expires_at": None,
    }
    body = {
        "requests_per_minute": 3,
        "tokens_per_day": 5000,
        "models": ["gpt-5-codex"],
        "expires_at": "2030-01-01T00:00:00Z",
    }
    patched = api.patch("/api/agents/my-agent", json={"limits": body})
    assert patched.status_code == 200, patched.text
    limits = patched.json()["limits"]
    assert limits["requests_per_minute"] == 3 and limits["models"] == ["gpt-5-codex"]
    assert limits["expires_at"].startswith("2030-01-01T00:00:00")
    assert sync_redis.hget(keys.agent("my-agent"), "limit_expires_at") == b"1893456000"
    # Only the fields given change; null removes one.
    again = api.patch("/api/agents/my-agent", json={"limits": {"tokens_per_day": None}})
    assert again.json()["limits"]["tokens_per_day"] is None
    assert again.json()["limits"]["requests_per_minute"] == 3
    entry = api.get("/api/audit").json()["data"][0]
    assert entry["action"] == "agent.limits"
    assert entry["before"]["tokens_per_day"] == 5000 and entry["after"]["tokens_per_day"] is None
    for bad, param in (
        ({"requests_per_minute": 0}, "limits.requests_per_minute"),
        ({"models": []}, "limits.models"),
        ({"tokens_per_day": "many"}, "limits.tokens_per_day"),
        ({"burst": 3}, "limits.burst"),
    ):
        response = api.patch("/api/agents/my-agent", json={"limits": bad})
        assert response.status_code == 422, (bad, response.text)
        assert error(response)["param"] == param, response.text
    missing = api.patch("/api/agents/nobody", json={"limits": {"requests_per_minute": 1}})
    assert missing.status_code == 404


def test_max_concurrent_is_set_shown_and_its_leases_counted(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    register(api, "acct-1")
    create_agent(api)
    api.put(POOL, json={"strategy": "round-robin", "providers": ["acct-1"]})
    patched = api.patch("/api/providers/acct-1", json={"max_concurrent": 2})
    assert patched.status_code == 200, patched.text
    assert patched.json()["max_concurrent"] == 2 and patched.json()["status"] == "active"
    far = 2**50
    sync_redis.zadd(keys.provider_leases("acct-1"), {"r1:acct-1": far, "old:acct-1": 1})
    [row] = api.get(f"{POOL}/activity").json()["providers"]
    assert row["in_flight"] == 1 and row["max_concurrent"] == 2
    bad = api.patch("/api/providers/acct-1", json={"max_concurrent": 0})
    assert bad.status_code == 422 and error(bad)["param"] == "max_concurrent"
    cleared = api.patch("/api/providers/acct-1", json={"max_concurrent": None})
    assert cleared.json()["max_concurrent"] is None
    assert api.get(f"{POOL}/activity").json()["providers"][0]["in_flight"] == 0


def test_limits_priorities_and_caps_survive_export_and_import(api: TestClient) -> None:
    for name in ("acct-1", "acct-2"):
        register(api, name)
    create_agent(api)
    body = {
        "strategy": "round-robin",
        "providers": ["acct-1", "acct-2"],
        "priorities": {"acct-2": "preserve"},
    }
    api.put(POOL, json=body)
    api.patch("/api/agents/my-agent", json={"limits": {"requests_per_minute": 5, "models": ["m"]}})
    api.patch("/api/providers/acct-1", json={"max_concurrent": 3})
    doc = api.get("/api/export").json()
    assert api.post("/api/import", json=doc).status_code == 200
    assert api.get(POOL).json()["priorities"] == {"acct-2": "preserve"}
    limits = api.get("/api/agents/my-agent").json()["limits"]
    assert limits["requests_per_minute"] == 5 and limits["models"] == ["m"]
    assert api.get("/api/providers/acct-1").json()["max_concurrent"] == 3
    # A malformed limit, priority or cap would break the selection script: refused.
    agent, provider = doc["agents"][0], doc["providers"][0]
    for bad, param in (
        ({**agent, "record": {**agent["record"], "limit_models": "[1"}}, "limit_models"),
        ({**agent, "record": {**agent["record"], "limit_requests_per_minute": "-1"}}, "minute"),
        ({**agent, "pool": {**agent["pool"], "priorities": '{"acct-1": "x"}'}}, "priorities"),
    ):
        response = api.post("/api/import", json={**doc, "agents": [bad]})
        assert response.status_code == 422, response.text
        assert error(response)["param"].endswith(param), response.text
    capped = {**provider, "record": {**provider["record"], "max_concurrent": "0"}}
    response = api.post("/api/import", json={**doc, "providers": [capped, *doc["providers"][1:]]})
    assert response.status_code == 422 and error(response)["param"].endswith("max_concurrent")
