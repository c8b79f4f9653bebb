"""Member priorities on the pool (PUT codex-pool) through the admin API."""

from __future__ import annotations

from fastapi.testclient import TestClient

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
