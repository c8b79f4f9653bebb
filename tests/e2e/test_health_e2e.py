# ruff: noqa: F811 - the router e2e fixtures are imported by name and requested as parameters
"""Router, health and codex-sim as real processes: a provider failing half the time is scored
down and cut off, and once its fault is cleared, one probe brings it back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codexpool_shared.activity import ALL_POOLS, HEALTHY_MIN, read_activity
from codexpool_shared.store import get_live
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.processes import Service, run_service
from tests.e2e.router.conftest import (  # noqa: F401 - fixtures used by name
    Pool,
    Sim,
    poll,
    pool,
    router_env,
    routers,
    secret_key,
    sim,
)

REQUEST = {"model": "gpt-5-codex", "input": "hi", "stream": True}
PROVIDERS = ["account-1", "account-2", "account-3"]


@pytest.fixture
def health(infra: InfraUrls, namespace: str, tmp_path: Path) -> Iterator[Service]:
    env = {
        "REDIS_URL": infra.redis_url,
        "AMQP_URL": infra.amqp_url,
        "CODEXPOOL_NAMESPACE": namespace,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "HEALTH_RESCORE_INTERVAL_S": "1",
    }
    with run_service("codexpool_health", env=env, log_dir=tmp_path / "logs", name="health") as s:
        yield s


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


async def test_half_failing_provider_is_scored_down_cut_off_and_probed_back(
    sim: Sim, pool: Pool, routers, health: Service
) -> None:
    for n in (1, 2, 3):  # quota is not what this test is about
        sim.patch(n, primary_cost_percent=0, secondary_cost_percent=0)
    await pool.setup(sim, [1, 2, 3], strategy="round-robin")
    # Only the health score may open the circuit here, not a streak of consecutive faults.
    [router] = routers(1, ROUTER_CIRCUIT_FAILURES="1000", ROUTER_CIRCUIT_BASE_S="15")
    sim.fault(2, kind="http_error", status=500, probability=0.5)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as client:
        await send(client, 300)

        # Every attempt the sim saw is counted once, by outcome.
        recorded = sim.requests()
        seen = Counter(sim.served_by())
        failed = sum(1 for r in recorded if r["status"] == 500)

        async def counted() -> bool:
            rows = await read_activity(pool.redis, pool.keys, PROVIDERS, scope=ALL_POOLS)
            return [r.requests for r in rows] == [seen[p] for p in PROVIDERS]

        await poll(counted, timeout_s=30)
        p1, p2, p3 = await read_activity(pool.redis, pool.keys, PROVIDERS, scope=pool.agent_id)
        assert (p1.failures, p3.failures) == (0, 0)
        assert p2.failures_by_class == {"server_error": failed}
        assert p2.successes == seen["account-2"] - failed
        assert p1.fallback_count + p3.fallback_count == failed
        assert p2.fallbacks_away == failed
        assert p2.health_score is not None and p2.health_score < HEALTHY_MIN

        async def circuit_open() -> bool:
            live = await get_live(pool.redis, pool.keys, "account-2")
            return live.circuit_open_until_ms > time.time() * 1000

        await poll(circuit_open, timeout_s=20)
        assert "account-2" not in await send(client, 30)

        sim.client.delete("/_sim/accounts/account-2/faults").raise_for_status()
        before = len(sim.requests())

        async def probed() -> bool:
            await send(client, 3, concurrency=1)
            return "account-2" in sim.served_by()[before:]

        await poll(probed, timeout_s=45)
        assert Counter(await send(client, 30, concurrency=1))["account-2"] >= 9
