"""A scripted outcome sequence against real Redis, checked against numbers worked out by hand.

Score formula (codexpool_health.scoring), defaults: prior m = 10 pseudo-samples of p0 = 0.95,
fallback penalty 0.5, latency target 2000 ms, limit 10000 ms, max latency penalty 0.5.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from redis.asyncio import Redis

from codexpool_health.store import HealthStore
from codexpool_shared.activity import ALL_POOLS, read_activity
from codexpool_shared.keys import Keys
from codexpool_shared.store.replies import text
from tests.unit.health.factories import as_outcome, attempt, outcome_event


@pytest.fixture
def minute0() -> int:
    # Half past a real minute: bucket TTLs are relative to the pinned clock, and the keys must
    # stay alive in the real Redis for the duration of the test.
    return int(time.time() // 60) * 60


def score(s: int, f: int, a: int, latency_over: float = 0.0, k: int = 0) -> float:
    success = (s + 10 * 0.95) / (s + f + 10)
    fallback = 1 - 0.5 * a / (s + f + 10)
    latency = 1 - 0.5 * latency_over * k / (k + 10)
    return math.floor(100 * success * fallback * latency * 100 + 0.5) / 100


async def test_scripted_sequence_gives_the_hand_computed_aggregates(
    redis: Redis, namespace: str, minute0: int
) -> None:
    keys = Keys(namespace)
    store = HealthStore(redis, keys, log_maxlen=1000)
    now = minute0 + 30
    e1 = outcome_event(minute0 + 1, attempt("p1", ttfb_ms=120, duration_ms=900))
    e2 = outcome_event(
        minute0 + 2,
        attempt("p1", "server_error", status_code=500, duration_ms=300),
        attempt("p2", ttfb_ms=400, duration_ms=1500, fallback=True),
    )
    e3 = outcome_event(
        minute0 + 3,
        attempt("p1", "usage_limit", status_code=429, duration_ms=50),
        attempt("p2", ttfb_ms=200, duration_ms=800, fallback=True),
        agent="agent-2",
    )
    e4 = outcome_event(minute0 + 4, attempt("p2", "timeout", duration_ms=30000))
    e5 = outcome_event(minute0 - 60, attempt("p1", ttfb_ms=3000, duration_ms=4000), agent="agent-2")
    # Two hours old: its minute bucket has expired, its hour bucket and the totals still count.
    e6 = outcome_event(minute0 - 7200, attempt("p1", duration_ms=10), agent="agent-2")

    first = await store.apply([as_outcome(e) for e in (e1, e2, e2, e3)], now=now)
    second = await store.apply([as_outcome(e) for e in (e4, e2, e5, e6)], now=now)

    assert first.applied == [True, True, False, True]
    assert second.applied == [True, False, True, True]

    p1, p2 = await read_activity(redis, keys, ["p1", "p2"], now=now)
    assert (p1.requests, p1.successes, p1.failures) == (5, 3, 2)
    assert p1.failures_by_class == {"server_error": 1, "usage_limit": 1}
    assert p1.success_rate == pytest.approx(3 / 4)  # usage_limit is not a verdict
    assert (p1.fallback_count, p1.fallbacks_away) == (0, 1)
    assert (p2.requests, p2.successes, p2.failures) == (3, 2, 1)
    assert p2.failures_by_class == {"timeout": 1}
    assert p2.success_rate == pytest.approx(2 / 3)
    assert (p2.fallback_count, p2.fallbacks_away) == (2, 0)  # e4's timeout was the last attempt

    # p1 window: successes e1, e5; fault e2 (then a fallback); TTFBs 120 (bucket <=250) and
    # 3000 (bucket <=3000): p95 rank 1.9 -> 2000 + 1000 * 0.9 = 2900 ms, over = 900 / 8000.
    assert p1.health_score == score(2, 1, 1, latency_over=900 / 8000, k=2)
    assert p1.health_score == 84.26
    assert p1.health_band == "healthy"
    assert p1.health_components["latency_p95_ms"] == pytest.approx(2900)
    assert p1.health_components["samples"] == 3
    assert p1.health_components["fallbacks_away"] == 1
    assert p1.health_components["prior_weight"] == 10
    # p2 window: successes e2, e3; fault e4 without fallback; TTFB p95 475 ms, under target.
    assert p2.health_score == score(2, 1, 0) == 88.46

    # Latency over the timeline window: TTFB 120, 3000; durations 900, 300, 50, 4000.
    assert p1.ttfb_p50_ms == pytest.approx(250)
    assert p1.ttfb_p95_ms == pytest.approx(2900)
    assert p1.duration_p50_ms == pytest.approx(500)
    assert p1.duration_p95_ms == pytest.approx(4600)

    assert len(p1.timeline) == 60
    last, before = p1.timeline[-1], p1.timeline[-2]
    assert last.t.timestamp() == minute0
    assert (last.requests, last.successes, last.failures, last.fallbacks) == (3, 1, 2, 0)
    assert (before.requests, before.successes, before.failures, before.fallbacks) == (1, 1, 0, 0)
    assert sum(p.requests for p in p1.timeline) == 4
    assert (p2.timeline[-1].requests, p2.timeline[-1].fallbacks) == (3, 2)
    assert len(p1.timeline_hourly) == 24
    hours = {p.t.timestamp(): p.requests for p in p1.timeline_hourly if p.requests}
    expected: dict[float, int] = {}
    for at in (minute0 + 1, minute0 + 2, minute0 + 3, minute0 - 60, minute0 - 7200):
        hour = float(int(at // 3600) * 3600)
        expected[hour] = expected.get(hour, 0) + 1
    assert hours == expected

    a1_p1, a1_p2 = await read_activity(redis, keys, ["p1", "p2"], scope="agent-1", now=now)
    assert (a1_p1.requests, a1_p1.successes, a1_p1.failures) == (2, 1, 1)
    assert (a1_p2.requests, a1_p2.fallback_count) == (2, 1)
    a2_p1, a2_p2 = await read_activity(redis, keys, ["p1", "p2"], scope="agent-2", now=now)
    assert (a2_p1.requests, a2_p1.successes, a2_p1.success_rate) == (3, 2, 1.0)
    assert (a2_p2.requests, a2_p2.fallback_count) == (1, 1)
    assert a2_p1.health_score == p1.health_score  # the score is per provider, across pools

    assert await redis.xlen(keys.outcome_log) == 6
    assert await redis.ttl(keys.event_seen(str(e1.event_id))) > 86_000
    # Buckets get their TTL when created (here by the first batch, then added to by the second).
    minute_ttl = await redis.ttl(keys.health_minute(ALL_POOLS, "p1", minute0))
    assert 7_000 < minute_ttl <= minute0 + 7200 - now
    hour = minute0 // 3600 * 3600
    assert await redis.ttl(keys.health_hour("agent-2", "p1", hour - 3600 * 2)) > 0


async def test_band_crossings_are_reported_once_and_old_faults_age_out(
    redis: Redis, namespace: str, minute0: int
) -> None:
    keys = Keys(namespace)
    store = HealthStore(redis, keys)
    now = minute0 + 30
    one_fault = outcome_event(minute0, attempt("p1", "server_error"), attempt("p2", fallback=True))
    result = await store.apply([as_outcome(one_fault)], now=now)
    by_provider = {s.provider: s for s in result.scores}
    # One fault does not flip a fresh provider: (0 + 9.5) / 11 * (1 - 0.5 / 11) = 82.44.
    assert by_provider["p1"].score == score(0, 1, 1) == 82.44
    assert not by_provider["p1"].crossed

    faults = [
        outcome_event(minute0, attempt("p1", "server_error"), attempt("p2", fallback=True))
        for _ in range(10)
    ]
    result = await store.apply([as_outcome(e) for e in faults], now=now)
    p1 = next(s for s in result.scores if s.provider == "p1")
    assert p1.score == score(0, 11, 11) == 33.39
    assert (p1.previous, p1.band, p1.crossed) == ("healthy", "unhealthy", True)
    again = await store.rescore(["p1"], now=now + 1)
    assert not again[0].crossed

    health = await redis.hgetall(keys.live("p1"))
    assert float(health[b"last_fault_at"]) == pytest.approx(minute0)
    components = json.loads(health[b"components"])
    assert (components["faults"], components["fallbacks_away"]) == (11, 11)

    # Five minutes later the faults have left the window: back to the prior, without traffic.
    recovered = await store.rescore(now=minute0 + 5 * 60 + 1)
    p1_recovered = next(s for s in recovered if s.provider == "p1")
    assert p1_recovered.score == 95.0
    assert (p1_recovered.previous, p1_recovered.band) == ("unhealthy", "healthy")


async def test_quota_exhaustion_is_not_a_fault(redis: Redis, namespace: str, minute0: int) -> None:
    store = HealthStore(redis, Keys(namespace))
    events = [
        outcome_event(minute0, attempt("p1", "usage_limit"), attempt("p2", fallback=True))
        for _ in range(20)
    ]
    result = await store.apply([as_outcome(e) for e in events], now=minute0 + 1)
    p1 = next(s for s in result.scores if s.provider == "p1")
    assert p1.score == 95.0
    (activity,) = await read_activity(redis, Keys(namespace), ["p1"], scope=ALL_POOLS)
    assert activity.failures_by_class == {"usage_limit": 20}
    assert activity.success_rate is None


async def test_a_batch_without_a_fault_rescores_a_provider_only_once_its_score_is_old(
    redis: Redis, namespace: str, minute0: int
) -> None:
    keys = Keys(namespace)
    store = HealthStore(redis, keys, score_refresh_s=1.0)
    now = minute0 + 30
    first = await store.apply([as_outcome(outcome_event(minute0, attempt("p1")))], now=now)
    assert [s.provider for s in first.scores] == ["p1"]  # no score yet: scored at once

    # Successes within the refresh interval are counted, the stored score waits for it.
    fresh = [outcome_event(minute0, attempt("p1")) for _ in range(3)]
    result = await store.apply([as_outcome(e) for e in fresh], now=now + 0.5)
    assert result.applied == [True] * 3 and result.scores == []
    health = await redis.hgetall(keys.live("p1"))
    assert json.loads(health[b"components"])["successes"] == 1
    assert float(health[b"updated_at"]) == now

    # A health fault rescores at once: the router opens circuits on the score.
    fault = outcome_event(minute0, attempt("p1", "server_error"))
    (p1,) = (await store.apply([as_outcome(fault)], now=now + 0.6)).scores
    assert p1.score == score(4, 1, 0)

    # Once the score is old enough, a success rescores it too.
    late = outcome_event(minute0, attempt("p1"))
    assert (await store.apply([as_outcome(late)], now=now + 1.5)).scores == []
    (p1,) = (
        await store.apply([as_outcome(outcome_event(minute0, attempt("p1")))], now=now + 1.6)
    ).scores
    assert p1.score == score(6, 1, 0)


@pytest.mark.parametrize("explain_ttl_s", [600, 86_400], ids=["seen-keys", "request-keys"])
async def test_a_batch_with_redeliveries_applies_only_its_new_events_once(
    redis: Redis, namespace: str, minute0: int, explain_ttl_s: int
) -> None:
    # The script sums a batch's counters assuming every event is new: a redelivery among new
    # events makes it write nothing and the store plan the batch again without it. Explanations
    # kept as long as the dedupe keys (24 h) are the dedupe themselves.
    keys = Keys(namespace)
    store = HealthStore(redis, keys, log_maxlen=1000, explain_ttl_s=explain_ttl_s, recent_max=10)
    now = minute0 + 30
    old = [
        outcome_event(minute0, attempt("p1", "timeout"), request_id=f"req_old{i}") for i in range(2)
    ]
    new = [outcome_event(minute0, attempt("p1"), request_id=f"req_new{i}") for i in range(3)]
    assert (await store.apply([as_outcome(e) for e in old], now=now)).applied == [True] * 2
    batch = [new[0], old[1], new[1], new[1], old[0], new[2]]
    result = await store.apply([as_outcome(e) for e in batch], now=now)
    assert result.applied == [True, False, True, False, False, True]
    again = await store.apply([as_outcome(e) for e in reversed(batch)], now=now)
    assert again.applied == [False] * 6 and again.scores == []

    (p1,) = await read_activity(redis, keys, ["p1"], now=now)
    assert (p1.requests, p1.successes, p1.failures) == (5, 3, 2)
    assert p1.timeline[-1].requests == 5
    assert await redis.xlen(keys.outcome_log) == 5
    recent = await redis.lrange(keys.recent_requests("agent-1"), 0, -1)
    assert [text(r) for r in recent] == [
        "req_new2",
        "req_new1",
        "req_new0",
        "req_old1",
        "req_old0",
    ]
    by_request = explain_ttl_s == 86_400
    for e in (*old, *new):
        assert await redis.get(keys.request(e.request_id)) == e.model_dump_json().encode()
        assert await redis.exists(keys.event_seen(str(e.event_id))) == (0 if by_request else 1)
        assert 0 < await redis.ttl(keys.request(e.request_id)) <= explain_ttl_s


async def test_events_reusing_a_request_id_each_count_once_and_the_first_explains_it(
    redis: Redis, namespace: str, minute0: int
) -> None:
    # The router never reuses a request id; another producer might, and its events still count.
    keys = Keys(namespace)
    store = HealthStore(redis, keys, log_maxlen=1000, explain_ttl_s=86_400)
    now = minute0 + 30
    first, second, third = (
        outcome_event(minute0, attempt("p1"), request_id="req_same") for _ in range(3)
    )
    result = await store.apply([as_outcome(e) for e in (first, second)], now=now)
    assert result.applied == [True, True]
    batch = [second, third, first, third]
    assert (await store.apply([as_outcome(e) for e in batch], now=now)).applied == [
        False,
        True,
        False,
        False,
    ]
    (p1,) = await read_activity(redis, keys, ["p1"], now=now)
    assert p1.requests == 3
    assert await redis.xlen(keys.outcome_log) == 3
    assert await redis.get(keys.request("req_same")) == first.model_dump_json().encode()
