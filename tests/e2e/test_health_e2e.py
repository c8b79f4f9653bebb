# ruff: noqa: F811 - fixtures are imported by name and requested as parameters
"""Router, health and codex-sim as real processes: a provider failing half the time is scored
down and cut off, and once its fault is cleared, one probe brings it back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx

from codexpool_shared.activity import ALL_POOLS, HEALTHY_MIN, read_activity
from codexpool_shared.store import get_live
from tests.e2e.conftest import poll
from tests.e2e.health_stack import PROVIDERS, Stack, stack  # noqa: F401

REQUEST = {"model": "gpt-5-codex", "input": "hi", "stream": True}


async def send(client: httpx.AsyncClient, count: int, concurrency: int = 4) -> list[str]:
    served: list[str] = []
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            response = await client.post("/v1/responses", json=REQUEST)
            assert response.status_code == 200, response.text
            served.append(response.headers["x-codexpool-provider"])

    await asyncio.gather(*(one() for _ in range(count)))
    return served


async def test_half_failing_provider_is_scored_down_cut_off_and_probed_back(stack: Stack) -> None:
    upstream = stack.upstream
    for n in (1, 2, 3):  # quota is not what this test is about
        upstream.patch(n, primary_cost_percent=0, secondary_cost_percent=0)
    await stack.pool([1, 2, 3])
    stack.start("codexpool_health", HEALTH_RESCORE_INTERVAL_S="1")
    # Only the health score may open the circuit here, not a streak of consecutive faults.
    router = stack.start(
        "codexpool_router", ROUTER_CIRCUIT_FAILURES="1000", ROUTER_CIRCUIT_BASE_S="15"
    )
    upstream.fault(2, kind="http_error", status=500, probability=0.5)
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as client:
        await send(client, 300)

        # Every attempt the sim saw is counted once, by outcome.
        seen = Counter(upstream.served_by())
        failed = sum(1 for r in upstream.requests() if r["status"] == 500)

        async def counted() -> bool:
            rows = await read_activity(stack.redis, stack.keys, PROVIDERS, scope=ALL_POOLS)
            return [r.requests for r in rows] == [seen[p] for p in PROVIDERS]

        await poll(counted, timeout_s=30)
        p1, p2, p3 = await read_activity(stack.redis, stack.keys, PROVIDERS, scope=stack.agent_id)
        assert (p1.failures, p3.failures) == (0, 0)
        assert p2.failures_by_class == {"server_error": failed}
        assert p2.successes == seen["account-2"] - failed
        assert p1.fallback_count + p3.fallback_count == failed
        assert p2.fallbacks_away == failed
        assert p2.health_score is not None and p2.health_score < HEALTHY_MIN

        async def circuit_open() -> bool:
            # The router opens a circuit when a selection sees the low score: keep selecting,
            # or a score that lands after the traffic above is never acted on.
            await send(client, 3, concurrency=1)
            live = await get_live(stack.redis, stack.keys, "account-2")
            return live.circuit_open_until_ms > time.time() * 1000

        await poll(circuit_open, timeout_s=20)
        assert "account-2" not in await send(client, 30)

        upstream.clear_faults(2)
        before = len(upstream.requests())

        async def probed() -> bool:
            await send(client, 3, concurrency=1)
            return "account-2" in upstream.served_by()[before:]

        await poll(probed, timeout_s=45)
        assert Counter(await send(client, 30, concurrency=1))["account-2"] >= 9
