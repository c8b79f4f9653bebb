"""``codexpool-health rebuild`` recomputes every aggregate from the outcome log."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from redis.asyncio import Redis

from codexpool_health.store import HealthStore
from codexpool_shared.activity import HealthFields
from codexpool_shared.keys import Keys
from codexpool_shared.store.live import LiveFields
from tests.integration.conftest import RedisTarget
from tests.integration.health.test_exactly_once import scripted_events, snapshot
from tests.unit.health.factories import as_outcome


async def test_rebuild_replays_the_log_into_identical_aggregates(
    redis: Redis, namespace: str, redis_target: RedisTarget
) -> None:
    keys = Keys(namespace)
    store = HealthStore(redis, keys, log_maxlen=10_000)
    events = scripted_events(500, seed=3)
    for start in range(0, len(events), 100):
        await store.apply([as_outcome(e) for e in events[start : start + 100]])
    await store.apply([as_outcome(e) for e in events[:50]])  # redeliveries: not logged twice
    now = time.time()
    before = await snapshot(redis, keys, now)
    # Corrupt an aggregate and a score, as a formula change would make every one of them stale.
    await redis.hset(keys.health_totals("agent-1", "p1"), "requests", 999_999)
    await redis.hset(
        keys.live("p1"), mapping={HealthFields.SCORE: "1.00", HealthFields.BAND: "unhealthy"}
    )
    # The router's live state shares the hash with the score: a rebuild leaves it as it was.
    await redis.hset(
        keys.live("p1"), mapping={LiveFields.COOLDOWN_UNTIL: 123, LiveFields.FAILURES: 2}
    )

    result = subprocess.run(
        [sys.executable, "-m", "codexpool_health", "rebuild"],
        env={
            **os.environ,
            "REDIS_URL": redis_target.url,
            "REDIS_CLUSTER": str(redis_target.cluster).lower(),
            "CODEXPOOL_NAMESPACE": namespace,
            "OTEL_SDK_DISABLED": "true",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert "replayed 500 events" in result.stdout
    assert await snapshot(redis, keys, now) == before
    live = await redis.hmget(keys.live("p1"), LiveFields.COOLDOWN_UNTIL, LiveFields.FAILURES)
    assert live == [b"123", b"2"]
    assert await redis.xlen(keys.outcome_log) == 500
