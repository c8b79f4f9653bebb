# ruff: noqa: F811 - fixtures are imported by name and requested as parameters
"""Router, health, admin API and codex-sim as real processes: a recorded window where
round-robin exhausted one account (it costs five times the others' quota per request), replayed
through the router's own selection script: round-robin again reproduces the actual counts within
2 %, and quota-aware over the same requests meets fewer usage limits."""

from __future__ import annotations

import asyncio
import time

import httpx

from codexpool_shared.store.replies import text
from tests.e2e.conftest import poll
from tests.e2e.health_stack import Stack, stack  # noqa: F401

ADMIN_TOKEN = "e2e-replay-admin-token-0123456789abcdef"
REQUEST = {"model": "gpt-5-codex", "input": "hi", "stream": False}
REQUESTS = 90


def close(projected: float, actual: float) -> bool:
    return abs(projected - actual) <= max(1.0, 0.02 * actual)


async def test_replay_reproduces_round_robin_and_quota_aware_meets_fewer_limits(
    stack: Stack,
) -> None:
    upstream = stack.upstream
    upstream.patch(1, primary_cost_percent=5, secondary_cost_percent=0)
    for n in (2, 3):
        upstream.patch(n, primary_cost_percent=1, secondary_cost_percent=0)
    await stack.pool([1, 2, 3])
    stack.start("codexpool_health", HEALTH_FORECAST_INTERVAL_S="0.2", HEALTH_BATCH_LINGER_MS="1")
    router = stack.start("codexpool_router")
    admin_api = stack.start("codexpool_admin_api", CODEXPOOL_ADMIN_TOKEN=ADMIN_TOKEN)
    key = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=key, timeout=30) as client:
        for _ in range(REQUESTS):
            response = await client.post("/v1/responses", json=REQUEST)
            assert response.status_code == 200, response.text
            await asyncio.sleep(0.1)  # steady traffic, sampled by the health service

    async def logged() -> bool:
        return await stack.redis.xlen(stack.keys.outcome_log) >= REQUESTS

    await poll(logged, timeout_s=30)
    observed = time.time() * 1000

    async def sampled() -> bool:  # the last snapshot of every member is in its history
        for n in (1, 2, 3):
            last = await stack.redis.xrevrange(stack.keys.quota_history(f"account-{n}"), count=1)
            live = await stack.redis.hget(stack.keys.live(f"account-{n}"), "quota_observed_at_ms")
            newest = last[0][0] if last else None
            if newest is None or int(text(newest).split("-")[0]) < int(live or 0):
                return False
        return True

    await poll(sampled, timeout_s=10)
    assert time.time() * 1000 - observed < 10_000

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    path = f"/api/agents/{stack.agent_id}/codex-pool/replay"
    async with httpx.AsyncClient(base_url=admin_api.url, headers=headers, timeout=60) as admin:
        rr = await admin.post(path, json={"strategy": "round-robin", "since_s": 3600})
        assert rr.status_code == 200, rr.text
        same = rr.json()
        qa = await admin.post(path, json={"strategy": "quota-aware", "since_s": 3600})
        assert qa.status_code == 200, qa.text
        aware = qa.json()

    actual = same["actual"]
    assert same["requests"] == REQUESTS and not same["truncated"]
    assert actual["served"] == REQUESTS and actual["limited"] >= 1  # account-1 ran out
    assert actual["first_exhaustion_at"] is not None
    projected = same["projected"]
    for field in ("served", "limited", "fallbacks"):
        assert close(projected[field], actual[field]), (field, projected, actual)
    for name, count in actual["per_provider"].items():
        assert close(projected["per_provider"].get(name, 0), count), (name, projected, actual)
    assert aware["actual"] == actual
    assert aware["projected"]["limited"] < actual["limited"], aware
    assert aware["projected"]["served"] == REQUESTS

    # Nothing of the scratch namespaces is left behind.
    leftovers = [k async for k in stack.redis.scan_iter(match="{*-replay-*}:*")]
    assert leftovers == []
