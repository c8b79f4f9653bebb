"""Per-provider concurrency caps across router processes, against codex-sim (issue 20)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import httpx

from codexpool_shared.store.leases import in_flight, set_max_concurrent
from tests.e2e.router.conftest import Pool, Sim

STREAM = {"model": "gpt-5-codex", "input": "hi", "stream": True}
DELAY_MS = 150


async def _stream(c: httpx.AsyncClient, url: str) -> tuple[int, dict[str, Any], str]:
    async with c.stream("POST", f"{url}/v1/responses", json=STREAM) as response:
        body = (await response.aread()).decode()
        return response.status_code, dict(response.headers), body


def _most_in_flight(sim: Sim, duration_s: float) -> dict[str, int]:
    """Per account, the most streams the sim was serving at once: each ran at least
    ``duration_s`` from its arrival (its events are paced), so overlapping spans are real."""
    names = {sim.account_id(n): f"account-{n}" for n in (1, 2, 3)}
    arrivals: dict[str, list[float]] = defaultdict(list)
    for r in sim.requests():
        arrivals[names[r["account_id"]]].append(r["at"])
    most = {}
    for name, starts in arrivals.items():
        most[name] = max(sum(1 for s in starts if s <= t < s + duration_s) for t in starts)
    return most


async def _capped_pool(sim: Sim, pool: Pool) -> None:
    await pool.setup(sim, [1, 2])
    for n in (1, 2):
        await set_max_concurrent(pool.redis, pool.keys, f"account-{n}", 2)
        sim.patch(n, event_delay_ms=DELAY_MS)


async def test_six_slow_streams_on_two_accounts_capped_at_two(
    sim: Sim, pool: Pool, routers
) -> None:
    await _capped_pool(sim, pool)
    [patient] = routers(1, ROUTER_CAPACITY_WAIT_S="30")
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as c:
        answers = await asyncio.gather(*(_stream(c, patient.url) for _ in range(6)))
    assert [status for status, _, _ in answers] == [200] * 6
    events = answers[0][2].count("\nevent: ") + answers[0][2].startswith("event: ")
    duration_s = DELAY_MS * (events - 1) / 1000
    assert duration_s >= 0.5
    assert max(_most_in_flight(sim, duration_s).values()) == 2
    assert len(sim.requests()) == 6  # the waiting two were served after a slot freed

    # A short wait: the two streams that find both accounts full get the documented 503.
    [hasty] = routers(1, ROUTER_CAPACITY_WAIT_S="0.2")
    async with httpx.AsyncClient(headers=headers, timeout=60) as c:
        answers = await asyncio.gather(*(_stream(c, hasty.url) for _ in range(6)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 4 + [503] * 2, statuses
    for status, response_headers, body in answers:
        if status == 503:
            assert '"provider_at_capacity"' in body
            assert response_headers["x-should-retry"] == "true"
            assert response_headers["retry-after"] == "1"
    assert max(_most_in_flight(sim, duration_s).values()) == 2


async def test_a_killed_router_leaks_no_lease_beyond_its_expiry(
    sim: Sim, pool: Pool, routers
) -> None:
    await _capped_pool(sim, pool)
    for n in (1, 2):
        sim.patch(n, event_delay_ms=1000)  # streams of several seconds
    ttl = 1.5
    [router] = routers(1, ROUTER_LEASE_TTL_S=str(ttl))
    headers = {"Authorization": f"Bearer {pool.api_key}"}

    async def leased() -> int:
        now = int(time.time() * 1000)
        return sum([await in_flight(pool.redis, pool.keys, f"account-{n}", now) for n in (1, 2)])

    async with httpx.AsyncClient(headers=headers, timeout=60) as c:
        streams = [asyncio.create_task(_stream(c, router.url)) for _ in range(3)]
        deadline = time.monotonic() + 10
        while len(sim.requests()) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await leased() == 3
        # Renewed while streaming: still held well past one TTL.
        await asyncio.sleep(ttl * 1.5)
        assert await leased() == 3
        router.process.kill()
        killed = time.monotonic()
        await asyncio.gather(*streams, return_exceptions=True)
    while await leased() and time.monotonic() < killed + ttl + 5:
        await asyncio.sleep(0.05)
    assert await leased() == 0
    # Gone within one TTL of the last renewal (renewals run every third of it).
    assert time.monotonic() - killed <= ttl + 1.0
