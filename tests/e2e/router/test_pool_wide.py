"""Behaviour across the whole pool and across router replicas."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import aiohttp
import httpx
import openai
import pytest
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

from codexpool_shared.store import remove_member
from tests.e2e.router.conftest import Pool, Sim

STREAM = {"model": "gpt-5-codex", "input": "hi", "stream": True}


async def test_whole_pool_exhausted_answers_429_at_once(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2, 3])
    [router] = routers(1)
    for n, reset_after in ((1, 1800), (2, 600), (3, 1200)):
        sim.patch(n, primary_used_percent=100, primary_reset_after_seconds=reset_after)
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=pool.api_key)
    await sdk.models.list()  # the SDK's first call pays for its lazy imports; not ours to time
    for expected_upstream in (3, 3):
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as raised:
            await sdk.responses.create(model="gpt-5-codex", input="hi")
        assert time.monotonic() - started < 1.0
        assert len(sim.requests()) == expected_upstream  # the SDK did not retry
        response = raised.value.response
        assert response.headers["x-should-retry"] == "false"
        retry_after = int(response.headers["retry-after"])
        assert abs(retry_after - 600) <= 1
        error = response.json()["error"]
        assert error["code"] == "usage_limit_reached"
        assert abs(error["resets_at"] - (time.time() + 600)) <= 2
    await sdk.close()


async def test_round_robin_is_exact_across_three_routers(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2, 3])
    sim.client.patch(
        "/_sim/accounts", json={"primary_cost_percent": 0, "secondary_cost_percent": 0}
    ).raise_for_status()
    replicas = routers(3)
    headers = {"Authorization": f"Bearer {pool.api_key}", "Content-Type": "application/json"}
    body = json.dumps(STREAM).encode()
    served: Counter[str] = Counter()
    # aiohttp: the client must not be the bottleneck of 3,000 requests on a 2-core machine.
    async with aiohttp.ClientSession(headers=headers) as session:
        # Another test may have configured telemetry in this process, instrumenting aiohttp
        # globally; its url_filter currently fails on yarl URLs, and spans are not wanted here.
        AioHttpClientInstrumentor.uninstrument_session(session)

        async def worker(first: int) -> None:
            for i in range(first, 3000, 30):
                url = replicas[i % 3].url + "/v1/responses"
                async with session.post(url, data=body) as response:
                    text = await response.text()
                    assert response.status == 200, text
                    served[response.headers["x-codexpool-provider"]] += 1

        await asyncio.gather(*(worker(first) for first in range(30)))
    assert sum(served.values()) == 3000
    assert all(abs(count - 1000) <= 1 for count in served.values()), served


async def test_refresh_race_refreshes_each_token_once(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2, 3])
    replicas = routers(3)
    sim.client.patch("/_sim/accounts", json={"expire_access_token": True}).raise_for_status()
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    clients = [httpx.AsyncClient(base_url=r.url, headers=headers, timeout=30) for r in replicas]
    responses = await asyncio.gather(
        *(clients[i % 3].post("/v1/responses", json=STREAM) for i in range(50))
    )
    for c in clients:
        await c.aclose()
    assert [r.status_code for r in responses] == [200] * 50
    assert all("response.completed" in r.text for r in responses)
    for n in (1, 2, 3):
        stats = sim.refreshes()[sim.account_id(n)]
        assert (stats["refreshes"], stats["reused"], stats["rejected"]) == (1, 0, 0), stats


async def test_removed_member_gets_no_request_on_any_replica(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2, 3])
    replicas = routers(3)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    for r in replicas:
        async with httpx.AsyncClient(base_url=r.url, headers=headers, timeout=30) as c:
            assert (await c.post("/v1/responses", json=STREAM)).status_code == 200
    await remove_member(pool.redis, pool.keys, pool.agent_id, "account-2")
    before = len(sim.requests())
    for r in replicas:
        async with httpx.AsyncClient(base_url=r.url, headers=headers, timeout=30) as c:
            for _ in range(4):
                response = await c.post("/v1/responses", json=STREAM)
                assert response.headers["x-codexpool-provider"] != "account-2"
    assert "account-2" not in sim.served_by()[before:]
