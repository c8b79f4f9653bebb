"""Each applied outcome is kept by request id for a bounded time, and listed per agent."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from codexpool_health.store import HealthStore
from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.keys import Keys
from tests.unit.health.factories import as_outcome, attempt, outcome_event


async def test_outcomes_are_kept_by_request_id_with_a_ttl_and_listed_newest_first(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    store = HealthStore(redis, keys, explain_ttl_s=600, recent_max=3)
    now = time.time()
    events = [outcome_event(now - 10 + i, attempt("p1"), request_id=f"req-{i}") for i in range(5)]
    again = events[4]
    result = await store.apply([as_outcome(e) for e in (*events, again)], now=now)
    assert result.applied == [True] * 5 + [False]
    raw = await redis.get(keys.request("req-2"))
    assert raw is not None
    assert RequestOutcomeV1.model_validate_json(raw) == events[2]
    assert 590 < await redis.ttl(keys.request("req-2")) <= 600
    recent = await redis.lrange(keys.recent_requests("agent-1"), 0, -1)
    assert recent == [b"req-4", b"req-3", b"req-2"]
    assert await redis.ttl(keys.recent_requests("agent-1")) > 590


async def test_nothing_is_kept_when_explanations_are_off(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    store = HealthStore(redis, keys)
    await store.apply([as_outcome(outcome_event(time.time(), attempt("p1")))])
    assert await redis.exists(keys.request("req"), keys.recent_requests("agent-1")) == 0
