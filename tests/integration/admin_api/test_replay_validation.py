from __future__ import annotations

from fastapi.testclient import TestClient

from tests.integration.admin_api.helpers import create_agent, error, register

POOL = "/api/agents/my-agent/codex-pool"


def test_a_replay_naming_a_member_twice_is_refused_like_a_pool(api: TestClient) -> None:
    register(api, "acct-1")
    create_agent(api)
    assert api.put(POOL, json={"strategy": "round-robin", "providers": ["acct-1"]}).is_success
    body = {"strategy": "round-robin", "providers": ["acct-1", "acct-1"]}
    refused = api.post(f"{POOL}/replay", json=body)
    assert refused.status_code == 422, refused.text
    assert error(refused)["param"] == "providers[1]"
