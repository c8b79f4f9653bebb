"""An agent's own limits across router replicas (issue 20)."""

from __future__ import annotations

import httpx

from codexpool_shared.store import create_agent, put_pool
from codexpool_shared.store.agents import set_agent_limits
from tests.e2e.router.conftest import Pool, Sim

BODY = {"model": "gpt-5-codex", "input": "hi"}


async def test_requests_per_minute_is_shared_by_every_router(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2])
    _, other_key = await create_agent(pool.redis, pool.keys, "agent-2")
    await put_pool(pool.redis, pool.keys, "agent-2", "round-robin", pool.providers)
    await set_agent_limits(pool.redis, pool.keys, pool.agent_id, {"requests_per_minute": 3})
    first, second = routers(2)
    limited = {"Authorization": f"Bearer {pool.api_key}"}
    other = {"Authorization": f"Bearer {other_key}"}
    async with httpx.AsyncClient(timeout=30) as c:
        statuses = []
        for url in (first.url, second.url, first.url):
            response = await c.post(f"{url}/v1/responses", json=BODY, headers=limited)
            statuses.append(response.status_code)
        refused = await c.post(f"{second.url}/v1/responses", json=BODY, headers=limited)
        for url in (first.url, second.url) * 3:
            response = await c.post(f"{url}/v1/responses", json=BODY, headers=other)
            statuses.append(response.status_code)
    assert statuses == [200] * 9
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "agent_limit_reached"
    assert refused.json()["error"]["param"] == "requests_per_minute"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-should-retry"] == "true"
    # Refused by the router itself: the sim saw the 3 + 6 answered requests only.
    assert len(sim.requests()) == 9


async def test_tokens_per_day_counts_response_usage(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1])
    await set_agent_limits(pool.redis, pool.keys, pool.agent_id, {"tokens_per_day": 1})
    [router] = routers(1)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        assert (await c.post("/v1/responses", json=BODY)).status_code == 200
        # The count is written after the answer, off the client's path: wait for it.
        for _ in range(100):
            refused = await c.post("/v1/responses", json=BODY)
            if refused.status_code == 429:
                break
        else:
            raise AssertionError("the day's tokens were never counted")
    assert refused.json()["error"]["code"] == "agent_limit_reached"
    assert refused.json()["error"]["param"] == "tokens_per_day"
    assert refused.headers["x-should-retry"] == "false"
