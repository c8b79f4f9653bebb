"""A pool's opt-in overflow through the admin API (issue 19): set with the routing
configuration, shown without its key, kept when a PUT leaves it out, removed with null,
refused with 422 before anything is written; the key is stored encrypted."""

from __future__ import annotations

from typing import cast

import redis
from fastapi.testclient import TestClient

from codexpool_shared.keys import Keys
from tests.integration.admin_api.helpers import create_agent, error, register, viewer_headers
from tests.integration.admin_api.tokens import auth_json

KEY = "sk-overflow-key-not-for-logs"
POOL = {"strategy": "round-robin", "providers": ["acct-1"]}


def test_overflow_is_set_shown_without_its_key_kept_and_removed(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    register(api, "acct-1")
    create_agent(api)
    put = api.put(
        "/api/agents/my-agent/codex-pool",
        json={**POOL, "overflow": {"base_url": "https://api.example/v1/", "api_key": KEY}},
    )
    assert put.status_code == 200, put.text
    assert put.json()["overflow"] == {"base_url": "https://api.example/v1", "api_key_set": True}
    stored = cast(dict[bytes, bytes], sync_redis.hgetall(keys.overflow("my-agent")))
    assert stored[b"api_key"].startswith(b"v1:") and KEY.encode() not in stored[b"api_key"]
    answers = [
        put,
        api.get("/api/agents/my-agent/codex-pool"),
        api.get("/api/agents/my-agent/codex-pool", headers=viewer_headers(api)),
        api.get("/api/audit"),
        api.get("/api/export"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert KEY not in answer.text
    # A PUT that does not name it keeps it; null removes it.
    kept = api.put("/api/agents/my-agent/codex-pool", json=POOL)
    assert kept.json()["overflow"]["base_url"] == "https://api.example/v1"
    removed = api.put("/api/agents/my-agent/codex-pool", json={**POOL, "overflow": None})
    assert removed.status_code == 200 and removed.json()["overflow"] is None
    assert not sync_redis.exists(keys.overflow("my-agent"))


def test_a_bad_overflow_is_refused_and_nothing_is_written(api: TestClient) -> None:
    register(api, "acct-1")
    create_agent(api)
    api.put("/api/agents/my-agent/codex-pool", json=POOL)
    for overflow, param in (
        ({"base_url": "ftp://api.example", "api_key": KEY}, "overflow.base_url"),
        ({"base_url": f"https://u:{KEY}@api.example", "api_key": KEY}, "overflow.base_url"),
        ({"base_url": "https://api.example", "api_key": "has space"}, "overflow.api_key"),
    ):
        body = {"strategy": "primary-first", "providers": ["acct-1"], "overflow": overflow}
        refused = api.put("/api/agents/my-agent/codex-pool", json=body)
        assert refused.status_code == 422, refused.text
        assert error(refused)["param"] == param
        assert KEY not in refused.text
    current = api.get("/api/agents/my-agent/codex-pool").json()
    assert current["strategy"] == "round-robin" and current["overflow"] is None


def test_the_activity_counts_the_overflow_apart_from_the_members(api: TestClient) -> None:
    register(api, "acct-1")
    create_agent(api)
    api.put("/api/agents/my-agent/codex-pool", json=POOL)
    activity = api.get("/api/agents/my-agent/codex-pool/activity").json()
    assert activity["overflow"] is None
    assert [row["provider"] for row in activity["providers"]] == ["acct-1"]
    overflow = {"base_url": "https://api.example/v1", "api_key": KEY}
    api.put("/api/agents/my-agent/codex-pool", json={**POOL, "overflow": overflow})
    activity = api.get("/api/agents/my-agent/codex-pool/activity")
    row = activity.json()["overflow"]
    assert row["base_url"] == "https://api.example/v1"
    assert (row["requests"], row["successes"], row["failures"]) == (0, 0, 0)
    assert [r["provider"] for r in activity.json()["providers"]] == ["acct-1"]
    assert KEY not in activity.text


def test_no_provider_may_take_the_overflows_name(api: TestClient) -> None:
    refused = api.post("/api/providers", json={"name": "overflow", "auth_json": auth_json("o")})
    assert refused.status_code == 422 and error(refused)["param"] == "name"


def test_deleting_the_agent_deletes_its_overflow(
    api: TestClient, sync_redis: redis.Redis, keys: Keys
) -> None:
    register(api, "acct-1")
    create_agent(api)
    overflow = {"base_url": "https://api.example/v1", "api_key": KEY}
    api.put("/api/agents/my-agent/codex-pool", json={**POOL, "overflow": overflow})
    assert sync_redis.exists(keys.overflow("my-agent"))
    assert api.delete("/api/agents/my-agent").status_code == 204
    assert not sync_redis.exists(keys.overflow("my-agent"))
