from __future__ import annotations

import orjson

from codexpool_health.plan import BatchPlan, attempt_fields, latency_fields
from codexpool_health.scoring import ScoreConfig
from codexpool_shared.activity import ALL_POOLS, HOUR_RETENTION_S
from codexpool_shared.keys import Keys
from tests.unit.health.factories import attempt, outcome_event

KEYS = Keys("ns")


def test_a_fault_followed_by_another_attempt_is_a_fallback_away() -> None:
    assert attempt_fields(attempt("p", "server_error"), last=False) == [
        "requests",
        "failures",
        "faults",
        "fallbacks_away",
    ]
    assert attempt_fields(attempt("p", "timeout"), last=True) == ["requests", "failures", "faults"]


def test_quota_and_client_errors_are_failures_but_not_faults() -> None:
    for outcome in ("usage_limit", "client_error", "auth_error", "cancelled", "shutdown"):
        assert attempt_fields(attempt("p", outcome), last=False) == ["requests", "failures"]


def test_an_attempt_after_a_failed_one_counts_as_a_fallback_to_its_provider() -> None:
    assert attempt_fields(attempt("p", fallback=True), last=True) == [
        "requests",
        "successes",
        "fallbacks",
    ]


def test_latency_buckets_cover_ttfb_only_when_a_first_byte_arrived() -> None:
    assert latency_fields(attempt("p", ttfb_ms=120, duration_ms=900)) == ["dur:4", "ttfb:2"]
    assert latency_fields(attempt("p", "timeout", duration_ms=70_000)) == ["dur:12"]


def plan_at(now: float) -> BatchPlan:
    return BatchPlan(KEYS, now, ScoreConfig(), seen_ttl_s=60, log_maxlen=10)


def decoded(plan: BatchPlan) -> tuple[list[str], dict[str, object], list[bytes]]:
    keys, args = plan.script_args()
    return keys, orjson.loads(args[0]), args[1:]


def increments(keys: list[str], script_plan: dict[str, object]) -> dict[tuple[str, str], int]:
    incr = script_plan["incr"]
    assert isinstance(incr, list)
    return {(keys[k - 1], f): n for k, f, n in zip(incr[::3], incr[1::3], incr[2::3], strict=True)}


def test_the_counters_of_a_batch_are_summed_into_one_increment_per_key_and_field() -> None:
    plan = plan_at(1_800_000_030.0)
    for _ in range(3):
        plan.add(outcome_event(1_800_000_001.0, attempt("p1")), b"{}")
    plan.add(outcome_event(1_800_000_001.0, attempt("p1", "server_error")), b"{}")
    keys, script_plan, bodies = decoded(plan)
    counted = increments(keys, script_plan)
    totals = KEYS.health_totals(ALL_POOLS, "p1")
    minute = KEYS.health_minute("agent-1", "p1", 1_800_000_000)
    assert counted[totals, "requests"] == 4
    assert counted[totals, "successes"] == 3
    assert counted[totals, "faults"] == 1
    assert counted[minute, "requests"] == 4
    incr = script_plan["incr"]
    assert isinstance(incr, list)
    assert len(counted) == len(incr) // 3  # one increment per key and field
    events = script_plan["events"]
    assert isinstance(events, list)
    assert len({keys[k - 1] for k in events[::2]}) == 4  # one dedupe key each
    assert events[1::2] == [0] * 4  # explanations off: no request key
    assert bodies == [b"{}"] * 4


def test_the_latest_fault_of_a_batch_is_its_one_maximum() -> None:
    plan = plan_at(1_800_000_030.0)
    plan.add(outcome_event(1_800_000_002.0, attempt("p1", "timeout")), b"{}")
    plan.add(outcome_event(1_800_000_001.0, attempt("p1", "timeout")), b"{}")
    plan.add(outcome_event(1_800_000_003.0, attempt("p1")), b"{}")
    keys, script_plan, _ = decoded(plan)
    maxima = script_plan["maxima"]
    assert isinstance(maxima, list)
    assert [keys[maxima[0] - 1], *maxima[1:]] == [
        KEYS.health_totals(ALL_POOLS, "p1"),
        "last_fault_at",
        1_800_000_002.0,
    ]


def test_explanations_name_each_request_and_list_it_under_its_agent_in_order() -> None:
    plan = BatchPlan(KEYS, 1_800_000_030.0, ScoreConfig(), 60, 10, explain_ttl_s=60, recent_max=5)
    for request_id in ("req_a", "req_b"):
        plan.add(outcome_event(1_800_000_001.0, attempt("p1"), request_id=request_id), b"{}")
    keys, script_plan, _ = decoded(plan)
    events, recent = script_plan["events"], script_plan["recent"]
    assert isinstance(events, list) and isinstance(recent, list)
    assert [keys[k - 1] for k in events[1::2]] == [KEYS.request("req_a"), KEYS.request("req_b")]
    assert [keys[recent[0] - 1], recent[1]] == [
        KEYS.recent_requests("agent-1"),
        ["req_a", "req_b"],
    ]


def test_buckets_past_their_retention_are_not_written() -> None:
    minute = 1_800_000_000
    plan = plan_at(minute + 3 * 3600)
    plan.add(outcome_event(minute + 1.0, attempt("p1")), b"{}")
    keys, script_plan, _ = decoded(plan)
    assert KEYS.health_minute(ALL_POOLS, "p1", minute) not in keys
    hour = minute // 3600 * 3600
    assert KEYS.health_hour(ALL_POOLS, "p1", hour) in keys
    expire = script_plan["expire"]
    assert isinstance(expire, list)
    ttl_of = dict(zip(expire[::2], expire[1::2], strict=True))
    hour_index = keys.index(KEYS.health_hour(ALL_POOLS, "p1", hour)) + 1
    assert ttl_of[hour_index] == hour + HOUR_RETENTION_S - (minute + 3 * 3600)


def test_tokens_go_to_the_hour_bucket_of_the_attempt_that_answered() -> None:
    at = 1_800_000_001.0
    plan = plan_at(at + 30)
    usage = {"input_tokens": 1234, "output_tokens": 56, "total_tokens": 1290}
    answered = outcome_event(at, attempt("p1", "server_error"), attempt("p2"), usage=usage)
    plan.add(answered, b"{}")
    # The same shape without tokens, and another shape with some.
    plan.add(outcome_event(at, attempt("p1", "server_error"), attempt("p2")), b"{}")
    plan.add(outcome_event(at, attempt("p2"), usage=usage), b"{}")
    keys, script_plan, _ = decoded(plan)
    counted = increments(keys, script_plan)
    hour = int(at // 3600 * 3600)
    for scope in ("agent-1", ALL_POOLS):
        assert counted[KEYS.health_hour(scope, "p2", hour), "input_tokens"] == 2468
        assert counted[KEYS.health_hour(scope, "p2", hour), "output_tokens"] == 112
        assert (KEYS.health_hour(scope, "p1", hour), "input_tokens") not in counted


def test_rescoring_reads_the_window_of_minute_buckets_across_pools() -> None:
    plan = BatchPlan(KEYS, 1_800_000_030.0, ScoreConfig(window_minutes=3), 60, 0)
    plan.rescore("p1")
    keys, script_plan, _ = decoded(plan)
    rescore = script_plan["rescore"]
    assert isinstance(rescore, list)
    (provider, health, totals, minutes, force) = rescore[0]
    assert force == 1
    assert (provider, keys[health - 1], keys[totals - 1]) == (
        "p1",
        KEYS.live("p1"),
        KEYS.health_totals(ALL_POOLS, "p1"),
    )
    assert [keys[m - 1] for m in minutes] == [
        KEYS.health_minute(ALL_POOLS, "p1", 1_800_000_000 - 60 * i) for i in range(3)
    ]
    assert script_plan["log"] == 0


def test_a_batch_rescores_at_once_only_the_providers_it_saw_a_health_fault_on() -> None:
    at = 1_800_000_001.0
    plan = BatchPlan(KEYS, at + 30, ScoreConfig(), 60, 0, rescore_after_s=1.0)
    plan.add(outcome_event(at, attempt("p1", "server_error"), attempt("p2", fallback=True)), b"{}")
    plan.add(outcome_event(at, attempt("p3", "usage_limit"), attempt("p2", fallback=True)), b"{}")
    plan.rescore_touched()
    _, script_plan, _ = decoded(plan)
    rescore = script_plan["rescore"]
    assert isinstance(rescore, list)
    assert {r[0]: r[4] for r in rescore} == {"p1": 1, "p2": 0, "p3": 0}
    assert script_plan["rescore_after"] == 1.0

    every_batch = BatchPlan(KEYS, at + 30, ScoreConfig(), 60, 0)
    every_batch.add(outcome_event(at, attempt("p2")), b"{}")
    every_batch.rescore_touched()
    _, script_plan, _ = decoded(every_batch)
    rescore = script_plan["rescore"]
    assert isinstance(rescore, list)
    assert [r[4] for r in rescore] == [1]


def test_request_keys_are_the_dedupe_only_when_kept_as_long_as_dedupe_keys() -> None:
    def by_request(seen_ttl_s: int, explain_ttl_s: int) -> object:
        plan = BatchPlan(KEYS, 1_800_000_030.0, ScoreConfig(), seen_ttl_s, 10, explain_ttl_s)
        return decoded(plan)[1]["by_request"]

    assert by_request(86_400, 86_400) == 1
    assert by_request(86_400, 7 * 86_400) == 1
    # Shorter explanations would let a late redelivery count again; off, there are none.
    assert by_request(86_400, 3600) == 0
    assert by_request(86_400, 0) == 0
