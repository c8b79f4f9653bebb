"""The runway loop against real Redis: quota snapshots sampled once each into their history,
the pool's forecast exported, and ``pool.runway_low.v1`` published once per episode."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from codexpool_health.runway import RunwayMetrics, RunwayMonitor
from codexpool_shared.events import PoolRunwayLowV1
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, put_pool, register_provider
from codexpool_shared.store.live import LiveFields
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.router.helpers import auth_json, keyring


async def observe(
    redis: Redis, keys: Keys, name: str, at: float, used: float, resets: float
) -> None:
    await redis.hset(
        keys.live(name),
        mapping={
            LiveFields.QUOTA_OBSERVED_AT: int(at * 1000),
            LiveFields.PRIMARY_USED_PERCENT: used,
            LiveFields.PRIMARY_WINDOW_MINUTES: 300,
            LiveFields.PRIMARY_RESETS_AT: int(resets),
        },
    )


async def test_samples_forecast_and_one_event_per_episode(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    ring = keyring()
    for name in ("p1", "p2"):
        await register_provider(redis, keys, ring, name, auth_json(f"acc-{name}"))
    await create_agent(redis, keys, "agent")
    await put_pool(redis, keys, "agent", "round-robin", ["p1", "p2"])
    publisher = InMemoryPublisher(namespace)
    await publisher.start()
    registry = CollectorRegistry()
    monitor = RunwayMonitor(redis, keys, publisher, RunwayMetrics(registry), history_maxlen=100)
    now = time.time()
    resets = now + 5 * 3600
    # Each member burns 30 %/h: 1 % every 2 minutes, sampled each minute for 5 minutes.
    for i in range(6):
        at = now - 300 + 60 * i
        for name in ("p1", "p2"):
            await observe(redis, keys, name, at, 40 + i / 2, resets)
        found = await monitor.tick(now=at)
        await monitor.tick(now=at)  # the same snapshot again: not sampled twice
    assert await redis.xlen(keys.quota_history("p1")) == 6
    pool = found["agent"].pool
    # Headroom 2 x 57.5 % at 60 %/h: 1.9167 h, before the reset in 5 h.
    assert pool.runway_s == pytest.approx(115 / 60 * 3600, rel=0.01)
    assert pool.before_reset and pool.limited_by == "primary"
    events = [p.event for p in publisher.published]
    assert len(events) == 1 and isinstance(events[0], PoolRunwayLowV1)
    assert events[0].agent_id == "agent" and events[0].limited_by == "primary"
    runway = registry.get_sample_value("codexpool_health_pool_runway_seconds", {"agent": "agent"})
    assert runway == pytest.approx(pool.runway_s)

    # The windows reset: too few samples of the new window for a figure, the episode closes.
    later = now + 60
    for name in ("p1", "p2"):
        await observe(redis, keys, name, later, 0, later + 5 * 3600)
    assert (await monitor.tick(now=later))["agent"].pool.runway_s is None
    assert not await redis.exists(keys.runway_low("agent"))
    assert len(publisher.published) == 1
    gone = registry.get_sample_value("codexpool_health_pool_runway_seconds", {"agent": "agent"})
    assert gone is None
