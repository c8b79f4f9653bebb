"""The router asks the selection for its fail-open snapshot only once the agent's is old."""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.core import build_core
from codexpool_router.metrics import Metrics
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, key_digest, put_pool, register_provider
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.router.helpers import auth_json, keyring


async def _selections(redis: Redis, namespace: str, refresh_s: float) -> list[int]:
    """How many member rows each of four selections of one agent brought."""
    keys = Keys(namespace)
    ring = keyring()
    for i in (1, 2, 3):
        await register_provider(redis, keys, ring, f"p{i}", auth_json(f"acc-{i}"))
    _, key = await create_agent(redis, keys, "agent")
    await put_pool(redis, keys, "agent", "round-robin", ["p1", "p2", "p3"])
    settings = Settings(namespace=namespace, failopen_refresh_s=refresh_s)
    async with aiohttp.ClientSession() as session:
        core = build_core(
            settings,
            keys,
            redis,
            ring,
            session,
            InMemoryPublisher(namespace),
            Metrics(CollectorRegistry()),
        )
        rows = []
        for n in range(4):
            selection = await core.select(key_digest(key), "", "m", f"req-{n}")
            assert len(selection.candidates) == 3
            rows.append(len(selection.members))
        assert core.snapshots.entry(key_digest(key), 60) is not None
        await core.selector.aclose()
    return rows


async def test_the_snapshot_is_asked_for_once_per_refresh_interval(
    redis: Redis, namespace: str
) -> None:
    assert await _selections(redis, namespace, refresh_s=60) == [3, 0, 0, 0]


async def test_a_refresh_interval_of_zero_asks_every_selection(
    redis: Redis, namespace: str
) -> None:
    assert await _selections(redis, namespace, refresh_s=0) == [3, 3, 3, 3]
