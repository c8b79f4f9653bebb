"""Real ``codexpool-health`` processes: killed mid-batch, or competing, still count each event once.

The reference is the same events applied straight through ``HealthStore`` into another
namespace; every aggregate (counters, timelines, latency, scores at a pinned instant) must match.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from codexpool_health.store import HealthStore
from codexpool_shared.activity import ALL_POOLS, read_activity
from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.keys import Keys
from codexpool_shared.testing.infra import unique_namespace
from tests.integration.health.conftest import HealthProcess, Publish, poll_until
from tests.unit.health.factories import as_outcome, attempt, outcome_event

PROVIDERS = ["p1", "p2", "p3"]
AGENTS = ["agent-1", "agent-2"]
OUTCOMES = ["success"] * 6 + ["server_error", "timeout", "usage_limit", "client_error"]


def scripted_events(count: int, seed: int) -> list[RequestOutcomeV1]:
    rng = random.Random(seed)
    now = time.time()
    events = []
    for _ in range(count):
        attempts = []
        for position in range(rng.randint(1, 3)):
            outcome = rng.choice(OUTCOMES) if position < 2 else "success"
            attempts.append(
                attempt(
                    rng.choice(PROVIDERS),
                    outcome,
                    ttfb_ms=rng.uniform(20, 4000) if outcome == "success" else None,
                    duration_ms=rng.uniform(10, 20000),
                    fallback=position > 0,
                )
            )
            if outcome == "success":
                break
        # A request id of its own, as the router gives each request: the explanation key is
        # then the dedupe (the service's defaults keep explanations as long as dedupe keys).
        events.append(
            outcome_event(
                now - rng.uniform(0, 600),
                *attempts,
                agent=rng.choice(AGENTS),
                request_id=f"req_{rng.getrandbits(96):024x}",
            )
        )
    return events


@pytest.fixture
async def reference(redis: Redis) -> AsyncIterator[Keys]:
    keys = Keys(unique_namespace("ref"))
    yield keys
    async for key in redis.scan_iter(match=keys.pattern, count=500):
        await redis.delete(key)


async def snapshot(redis: Redis, keys: Keys, now: float) -> dict[str, Any]:
    await HealthStore(redis, keys).rescore(PROVIDERS, now=now)
    return {
        scope: [
            row.model_dump(exclude={"health_updated_at"})
            for row in await read_activity(redis, keys, PROVIDERS, scope=scope, now=now)
        ]
        for scope in [ALL_POOLS, *AGENTS]
    }


async def total_attempts(redis: Redis, keys: Keys) -> int:
    values = [await redis.hget(keys.health_totals(ALL_POOLS, p), "requests") for p in PROVIDERS]
    return sum(int(v or 0) for v in values)


async def apply_reference(redis: Redis, keys: Keys, events: list[RequestOutcomeV1]) -> int:
    store = HealthStore(redis, keys)
    for start in range(0, len(events), 200):
        await store.apply([as_outcome(e) for e in events[start : start + 200]])
    return await total_attempts(redis, keys)


async def publish_all(publish: Publish, events: list[RequestOutcomeV1]) -> None:
    chunks = [events[i : i + 500] for i in range(0, len(events), 500)]
    await asyncio.gather(*(publish(chunk) for chunk in chunks))


async def test_sigkill_mid_batch_then_restart_counts_every_event_once(
    redis: Redis,
    namespace: str,
    reference: Keys,
    publish: Publish,
    health_processes: Callable[..., HealthProcess],
) -> None:
    keys = Keys(namespace)
    events = scripted_events(3000, seed=1)
    expected_attempts = await apply_reference(redis, reference, events)
    await publish_all(publish, events)

    first = health_processes(HEALTH_BATCH_SIZE="20")
    await first.wait_ready()

    async def partly_applied() -> bool:
        return await total_attempts(redis, keys) >= expected_attempts // 10

    await poll_until(partly_applied, what="the first process to apply some events")
    first.kill()
    at_kill = await total_attempts(redis, keys)
    assert 0 < at_kill < expected_attempts, "the kill should land mid-stream"

    second = health_processes()
    await second.wait_ready()

    async def all_applied() -> bool:
        return await total_attempts(redis, keys) >= expected_attempts

    await poll_until(all_applied, timeout_s=60, what="the restarted process to catch up")
    second.stop()
    now = time.time()
    assert await snapshot(redis, keys, now) == await snapshot(redis, reference, now)


async def test_two_competing_processes_count_every_event_once(
    redis: Redis,
    namespace: str,
    reference: Keys,
    publish: Publish,
    health_processes: Callable[..., HealthProcess],
) -> None:
    keys = Keys(namespace)
    events = scripted_events(2000, seed=2)
    expected_attempts = await apply_reference(redis, reference, events)
    processes = [health_processes(HEALTH_BATCH_SIZE="25"), health_processes()]
    await asyncio.gather(*(p.wait_ready() for p in processes))
    # Every event twice: redeliveries that reach the other process must not count again.
    await publish_all(publish, events + events)

    async def all_applied() -> bool:
        return await total_attempts(redis, keys) >= expected_attempts

    await poll_until(all_applied, timeout_s=60, what="both processes to apply everything")

    async def every_delivery_handled() -> bool:
        handled = [await p.metrics() for p in processes]
        return sum(
            _processed(m, "applied") + _processed(m, "duplicate") for m in handled
        ) >= 2 * len(events)

    await poll_until(every_delivery_handled, what="every delivery to be handled")
    metrics = [await p.metrics() for p in processes]
    applied = [_processed(m, "applied") for m in metrics]
    assert all(a > 0 for a in applied), f"both processes should share the work: {applied}"
    assert sum(applied) == len(events)
    assert sum(_processed(m, "duplicate") for m in metrics) == len(events)
    for process in processes:
        process.stop()
    now = time.time()
    assert await snapshot(redis, keys, now) == await snapshot(redis, reference, now)


def _processed(metrics: str, result: str) -> int:
    prefix = f'codexpool_health_events_processed_total{{result="{result}"}} '
    line = next(line for line in metrics.splitlines() if line.startswith(prefix))
    return int(float(line.removeprefix(prefix)))
