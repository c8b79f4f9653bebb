"""Fail-open routing: two routers keep serving agents they have seen while their Redis is down.

Each test starts a private ``redis-server`` (``codexpool_shared.testing.redis_server``) and drives
an open-loop load of about 20 requests per second through two router processes.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store import put_pool
from codexpool_shared.testing.processes import Service
from codexpool_shared.testing.redis_server import PrivateRedis, private_redis
from tests.e2e.conftest import poll
from tests.e2e.router.conftest import Pool, Sim

BODY = {"model": "gpt-5-codex", "input": "hi", "stream": False}
RATE = 20.0
REDIS_TIMEOUT_S = 0.5

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True, slots=True)
class Shot:
    router: int
    started: float
    duration: float
    status: int
    provider: str | None


class Load:
    """An open loop of requests, alternating between the routers, at ``RATE`` per second."""

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self.clients = clients
        self.shots: list[Shot] = []
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def _one(self, index: int) -> None:
        started = time.monotonic()
        try:
            response = await self.clients[index].post("/v1/responses", json=BODY)
            status, provider = response.status_code, response.headers.get("x-codexpool-provider")
        except httpx.HTTPError:
            status, provider = 0, None
        self.shots.append(Shot(index, started, time.monotonic() - started, status, provider))

    async def _run(self) -> None:
        tasks = []
        begin = time.monotonic()
        n = 0
        while not self._stop.is_set():
            delay = begin + n / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._one(n % len(self.clients))))
            n += 1
        await asyncio.gather(*tasks)

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def stop(self) -> list[Shot]:
        self._stop.set()
        if self._runner is not None:
            await self._runner
        return sorted(self.shots, key=lambda s: s.started)

    def recent(self, router: int, since: float) -> list[Shot]:
        """The router's answered requests that started at ``since`` or later, in answer order."""
        return [s for s in self.shots if s.router == router and s.started >= since]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def private_pool(store: PrivateRedis, namespace: str, secret_key: str) -> AsyncIterator[Pool]:
    client = Redis.from_url(store.url, socket_timeout=5, socket_connect_timeout=5)
    yield Pool(client, Keys(namespace), Keyring.from_secret(secret_key))
    await client.aclose()


async def _setup(
    sim: Sim, pool: Pool, routers, store: PrivateRedis
) -> tuple[list[Service], list[httpx.AsyncClient]]:
    for n in (1, 2, 3):
        sim.patch(n, primary_cost_percent=0.05, secondary_cost_percent=0)
    await pool.setup(sim, [1, 2, 3], strategy="round-robin")
    services = routers(2, REDIS_URL=store.url, ROUTER_FAILOPEN_OPEN_S="1")
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    clients = [httpx.AsyncClient(base_url=s.url, headers=headers, timeout=15) for s in services]
    for c in clients:  # each replica serves the agent once while Redis is up
        assert (await c.post("/v1/responses", json=BODY)).status_code == 200
    return services, clients


async def _held(client: httpx.AsyncClient, tokens: int = 3) -> bool:
    text = (await client.get("/metrics")).text
    return _metric(text, "codexpool_router_tokens_held") >= tokens


def _metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def test_redis_stopped_serves_from_snapshots_then_resumes(
    sim: Sim, private_pool: Pool, routers, store: PrivateRedis
) -> None:
    services, clients = await _setup(sim, private_pool, routers, store)
    load = Load(clients)
    try:
        load.start()
        await asyncio.sleep(2)
        down = time.monotonic()
        await asyncio.to_thread(store.stop)
        await asyncio.sleep(10)
        await asyncio.to_thread(store.start)
        up = time.monotonic()

        # Shared state resumes: a pool change made now reaches both replicas.
        admin = Redis.from_url(store.url, socket_timeout=5)
        members = ["account-1", "account-2"]
        await put_pool(admin, private_pool.keys, "agent-1", "round-robin", members)
        await admin.aclose()
        changed = time.monotonic()

        async def applied() -> bool:
            tails = [load.recent(r, changed)[-5:] for r in range(2)]
            return all(len(t) == 5 and all(s.provider in members for s in t) for t in tails)

        await poll(applied, timeout_s=10)
        resumed = time.monotonic()
    finally:
        shots = await load.stop()
        metrics = [(await c.get("/metrics")).text for c in clients]
        for c in clients:
            await c.aclose()

    assert resumed - up < 10
    ok = [s for s in shots if s.status == 200]
    assert len(ok) >= 0.99 * len(shots), Counter(s.status for s in shots)
    during = [s for s in shots if down <= s.started < up]
    assert len(during) >= 0.9 * RATE * 10
    # Only the requests in flight before the breakers opened (and none after) waited for Redis.
    slow = [s for s in during if s.duration > REDIS_TIMEOUT_S * 0.8]
    assert len(slow) <= 2 * (3 + RATE / 2 * REDIS_TIMEOUT_S + 2), slow
    assert all(s.started < down + 2 for s in slow), slow
    for text in metrics:
        assert _metric(text, "codexpool_router_store_fallback_total") > 0.9 * RATE * 10 / 2 - 10
        assert _metric(text, "codexpool_router_store_breaker_state") == 0
    # Once the breakers are open, each replica rotates evenly on its own.
    for r in range(2):
        steady = [s.provider for s in during if s.router == r and s.started > down + 2]
        counts = Counter(steady)
        assert set(counts) == {"account-1", "account-2", "account-3"}, counts
        assert max(counts.values()) - min(counts.values()) <= 0.05 * len(steady), counts


async def test_redis_paused_costs_at_most_one_timeout(
    sim: Sim, private_pool: Pool, routers, store: PrivateRedis
) -> None:
    _, clients = await _setup(sim, private_pool, routers, store)
    load = Load(clients)
    try:
        load.start()
        await asyncio.sleep(2)
        before = list(load.shots)
        store.pause()
        paused = time.monotonic()
        try:
            await asyncio.sleep(6)
        finally:
            store.resume()
        resumed = time.monotonic()

        async def closed() -> bool:
            texts = [(await c.get("/metrics")).text for c in clients]
            return all(_metric(t, "codexpool_router_store_breaker_state") == 0 for t in texts)

        await poll(closed, timeout_s=10)
        await asyncio.sleep(1)
    finally:
        shots = await load.stop()
        metrics = [(await c.get("/metrics")).text for c in clients]
        for c in clients:
            await c.aclose()

    upstream = max(s.duration for s in before)
    ok = [s for s in shots if s.status == 200]
    assert len(ok) >= 0.99 * len(shots), Counter(s.status for s in shots)
    during = [s for s in shots if paused <= s.started < resumed]
    assert len(during) >= 0.9 * RATE * 6
    # Slack for two shared cores: scheduling, not Redis.
    bound = REDIS_TIMEOUT_S + upstream + 0.25
    assert max(s.duration for s in shots) <= bound, (bound, sorted(s.duration for s in shots)[-5:])
    # Only requests in flight before the breakers opened waited; the probes run in the background.
    # One that started up to a request's length before the pause may have reached Redis after it.
    slow = [s for s in shots if s.duration > REDIS_TIMEOUT_S * 0.8]
    assert slow and all(paused - upstream <= s.started < paused + 2 for s in slow), (
        paused,
        upstream,
        slow,
    )
    for text in metrics:
        assert _metric(text, "codexpool_router_store_fallback_total") > 0


async def test_without_redis_a_401_fails_over_and_a_429_cools_down_locally(
    sim: Sim, private_pool: Pool, routers, store: PrivateRedis
) -> None:
    await private_pool.setup(sim, [1, 2, 3], strategy="primary-first")
    [router] = routers(1, REDIS_URL=store.url)
    headers = {"Authorization": f"Bearer {private_pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=15) as c:

        async def served() -> tuple[str, str]:
            response = await c.post("/v1/responses", json=BODY)
            assert response.status_code == 200, response.text
            return response.headers["x-codexpool-provider"], response.headers[
                "x-codexpool-attempts"
            ]

        assert await served() == ("account-1", "1")
        # Every member's token, read in the background after the first selection: a member
        # whose token the replica never read is skipped while Redis is down.
        await poll(lambda: _held(c), timeout_s=10)
        await asyncio.to_thread(store.stop)
        assert await served() == ("account-1", "1")  # from the snapshot
        # No shared refresh lock: the 401 fails over instead of refreshing.
        sim.fault(1, kind="token_expired", count=1)
        assert await served() == ("account-2", "2")
        assert await served() == ("account-1", "1")
        # A usage limit keeps the account out of this replica's selections.
        sim.fault(1, kind="usage_limit", count=1)
        assert await served() == ("account-2", "2")
        assert [await served() for _ in range(3)] == [("account-2", "1")] * 3
        metrics = (await c.get("/metrics")).text
    assert _metric(metrics, "codexpool_router_token_refreshes_total") == 0
    assert _metric(metrics, "codexpool_router_store_fallback_total") >= 7
