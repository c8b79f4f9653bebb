"""The ledger's accounting of attempts that never got a result, and of refused requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from codexpool_router.attempt import Result
from codexpool_router.config import Settings
from codexpool_router.inbound import Inbound
from codexpool_router.metrics import Metrics
from codexpool_router.outcome import AttemptSpan, Ledger
from codexpool_shared import telemetry
from codexpool_shared.errors import ApiError
from codexpool_shared.events import BaseEvent, EncodedEvent, RequestOutcomeV1, RequestRejectedV1
from codexpool_shared.messaging import codec
from codexpool_shared.store.selection import Candidate, Selection


@dataclass
class FakeCore:
    settings: Settings = field(default_factory=Settings)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    events: list[BaseEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.metrics = Metrics(self.registry)

    def publish(self, event: BaseEvent | EncodedEvent) -> None:
        self.events.append(codec.decode(event.body) if isinstance(event, EncodedEvent) else event)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    telemetry.configure("codexpool-test")
    with telemetry.capture_spans() as exporter:
        yield exporter


def candidate(name: str, *, probe: bool = False) -> Candidate:
    return Candidate(name, "acct", "env", None, 1, probe, 0)


def routed(core: FakeCore, *candidates: Candidate) -> Ledger:
    ledger = Ledger(cast(Any, core), "v1", "req_1")
    selection = Selection("agent-1", "round-robin", 3, len(candidates), candidates, 0, 0, 0)
    inbound = cast(Inbound, type("I", (), {"model": "m", "stream": True})())
    ledger.routed(selection, inbound)
    return ledger


def state(core: FakeCore, provider: str, name: str) -> float | None:
    labels = {"provider": provider, "state": name}
    return core.registry.get_sample_value("codexpool_router_account_state", labels)


@pytest.mark.parametrize(
    ("client_gone", "final", "outcome"),
    [(True, None, "cancelled"), (False, "shutdown", "shutdown")],
)
async def test_an_attempt_stopped_before_its_first_byte_is_listed_and_its_span_ends(
    spans: InMemorySpanExporter, client_gone: bool, final: Any, outcome: str
) -> None:
    core = FakeCore()
    ledger = routed(core, candidate("account-1"))

    async def stopped() -> Result:
        raise asyncio.CancelledError

    started = time.time_ns()
    with pytest.raises(asyncio.CancelledError):
        await ledger.attempted(candidate("account-1"), "POST codex/responses", {"a": 1}, stopped())
    ledger.client_gone = client_gone
    ledger.final_outcome = final
    ledger.emit()

    [event] = core.events
    assert isinstance(event, RequestOutcomeV1)
    assert event.final_outcome == outcome
    [attempt] = event.attempts
    assert (attempt.provider, attempt.outcome, attempt.status_code) == ("account-1", outcome, None)
    [ended] = spans.get_finished_spans()
    assert (ended.name, ended.kind) == ("POST codex/responses", SpanKind.CLIENT)
    assert ended.start_time is not None and ended.start_time >= started
    assert ended.end_time is not None and ended.end_time >= ended.start_time
    assert ended.status.status_code is StatusCode.ERROR
    assert ended.attributes == {
        "a": 1,
        "gen_ai.request.model": "m",
        "codexpool.provider": "account-1",
        "codexpool.attempt": 1,
        "codexpool.fallback": False,
        "codexpool.outcome": outcome,
    }
    labels: dict[str, str] = {"provider": "account-1", "outcome": outcome}
    assert core.registry.get_sample_value("codexpool_router_attempts_total", labels) == 1


def test_a_refused_request_publishes_one_rejection_and_no_outcome() -> None:
    core = FakeCore()
    ledger = Ledger(cast(Any, core), "codex", "req_2")
    ledger.rejected(ApiError(503, "no pool", code="no_pool"), "agent-9")
    ledger.emit()
    [event] = core.events
    assert isinstance(event, RequestRejectedV1)
    assert (event.request_id, event.agent_id, event.reason, event.status_code, event.route) == (
        "req_2",
        "agent-9",
        "no_pool",
        503,
        "codex",
    )


def test_account_state_follows_what_the_selection_and_the_attempts_show() -> None:
    span = AttemptSpan("POST codex/responses", {})
    core = FakeCore()
    routed(core, candidate("account-1"), candidate("account-2", probe=True))
    assert state(core, "account-1", "closed") == 1
    assert state(core, "account-2", "half_open") == 1
    assert state(core, "account-2", "closed") == 0
    ledger = routed(core, candidate("account-1"))
    ledger.attempt(candidate("account-1"), Result("usage_limit", 429, time.perf_counter()), span)
    assert state(core, "account-1", "closed") == 0
    assert state(core, "account-1", "cooling_down") == 1


def sample(core: FakeCore, name: str, **labels: str) -> float | None:
    return core.registry.get_sample_value(name, labels)


async def test_client_latency_runs_from_arrival_to_the_first_and_last_byte_sent() -> None:
    core = FakeCore()
    ledger = routed(core, candidate("account-1"))
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])

    timed = ledger.timed(send)
    await timed({"type": "http.response.start", "status": 200, "headers": []})
    await timed({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    await timed({"type": "http.response.body", "body": b"", "more_body": False})
    ledger.final_outcome = "success"
    ledger.counted()

    assert sent == ["http.response.start", "http.response.body", "http.response.body"]
    route = {"route": "v1", "outcome": "success"}
    assert sample(core, "codexpool_router_requests_total", **route) == 1
    assert sample(core, "codexpool_router_request_ttfb_seconds_count", **route) == 1
    assert sample(core, "codexpool_router_request_duration_seconds_count", **route) == 1
    ttfb = sample(core, "codexpool_router_request_ttfb_seconds_sum", **route)
    duration = sample(core, "codexpool_router_request_duration_seconds_sum", **route)
    assert ttfb is not None and duration is not None and 0 < ttfb <= duration


async def test_a_refused_request_is_timed_under_rejected_and_a_silent_one_has_no_ttfb() -> None:
    core = FakeCore()
    refused = Ledger(cast(Any, core), "codex", "req_3")

    async def send(message: Any) -> None:
        return None

    refused.rejected(ApiError(401, "no key", code="missing_api_key"), None)
    await refused.timed(send)({"type": "http.response.start", "status": 401, "headers": []})
    await refused.timed(send)({"type": "http.response.body", "body": b"{}"})
    refused.counted()
    gone = routed(core, candidate("account-1"))
    gone.counted()

    rejected = {"route": "codex", "outcome": "rejected"}
    assert sample(core, "codexpool_router_request_ttfb_seconds_count", **rejected) == 1
    assert sample(core, "codexpool_router_request_duration_seconds_count", **rejected) == 1
    cancelled = {"route": "v1", "outcome": "cancelled"}
    assert sample(core, "codexpool_router_requests_total", **cancelled) == 1
    assert sample(core, "codexpool_router_request_duration_seconds_count", **cancelled) == 1
    assert sample(core, "codexpool_router_request_ttfb_seconds_count", **cancelled) is None


def test_provider_counters_carry_the_provider() -> None:
    core = FakeCore()
    metrics = core.metrics
    metrics.failover("account-1", "timeout")
    metrics.cooldown("account-2", "usage_limit")
    metrics.circuit("account-1", "opened")
    metrics.circuit("account-1", "opened")
    assert (
        sample(core, "codexpool_router_failovers_total", provider="account-1", reason="timeout")
        == 1
    )
    assert (
        sample(core, "codexpool_router_cooldowns_total", provider="account-2", reason="usage_limit")
        == 1
    )
    assert (
        sample(
            core,
            "codexpool_router_circuit_transitions_total",
            provider="account-1",
            transition="opened",
        )
        == 2
    )


@pytest.mark.parametrize("explain", [True, False])
def test_the_outcome_carries_the_decision_unless_explanations_are_off(explain: bool) -> None:
    core = FakeCore(settings=Settings(explain=explain))
    ledger = Ledger(cast(Any, core), "v1", "req_1")
    selection = Selection(
        "agent-1",
        "primary-first",
        3,
        3,
        (candidate("account-2"),),
        60_000,
        0,
        1,
        skipped=[["account-1", "cooldown:usage_limit", 1_800_000_000_000]],
        passed=["account-3"],
    )
    ledger.routed(selection, cast(Inbound, type("I", (), {"model": "m", "stream": False})()))
    ledger.emit()
    [event] = core.events
    assert isinstance(event, RequestOutcomeV1)
    if not explain:
        assert event.decision is None
        return
    assert event.decision is not None
    reasons = [(c.provider, c.eligible, c.reason, c.rank) for c in event.decision.candidates]
    assert reasons == [
        ("account-2", True, "strategy_order", 0),
        ("account-3", True, "beyond_attempt_limit", None),
        ("account-1", False, "cooldown", None),
    ]
    assert event.decision.candidates[2].detail == "usage_limit"
    assert event.decision.pool_size == 3
