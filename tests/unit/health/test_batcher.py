from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest
from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from codexpool_health.batcher import OutcomeBatcher, ShuttingDownError
from codexpool_health.metrics import HealthMetrics
from codexpool_health.store import BatchResult, HealthStore, Outcome, ProviderScore
from codexpool_shared import telemetry
from codexpool_shared.messaging import Delivery, MessageInfo
from tests.unit.health.factories import attempt, outcome_event


class FakeStore:
    def __init__(self, failures: Sequence[Exception] = ()) -> None:
        self.failures = list(failures)
        self.batches: list[list[Outcome]] = []
        self.seen: set[str] = set()

    async def apply(self, outcomes: Sequence[Outcome]) -> BatchResult:
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(list(outcomes))
        applied = []
        for outcome in outcomes:
            event_id = str(outcome.event.event_id)
            applied.append(event_id not in self.seen)
            self.seen.add(event_id)
        return BatchResult(applied, [ProviderScore("p1", 90.0, "healthy", None)])


class FakeChannel:
    pass


class FakeMessage:
    def __init__(
        self, channel: FakeChannel, tag: int, headers: dict[str, object] | None = None
    ) -> None:
        self.channel = channel
        self.delivery_tag = tag
        self.body = b"{}"
        self.headers = headers
        self.info = MessageInfo(str(tag), "ns.events", "request.outcome.v1", False, 0)
        self.acks: list[bool] = []
        self.nacks: list[bool] = []

    async def ack(self, multiple: bool = False) -> None:
        self.acks.append(multiple)

    async def nack(self, requeue: bool = True) -> None:
        self.nacks.append(requeue)


def make(store: FakeStore, scores: list[ProviderScore] | None = None, **kw: Any):
    registry = CollectorRegistry()
    metrics = HealthMetrics(registry)
    seen = scores if scores is not None else []
    batcher = OutcomeBatcher(cast(HealthStore, store), metrics, seen.extend, **kw)
    return batcher, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_a_batch_is_applied_once_and_acked_with_one_multiple_ack() -> None:
    store = FakeStore()
    scores: list[ProviderScore] = []
    batcher, registry = make(store, scores, linger_s=0.01)
    await batcher.start()
    channel = FakeChannel()
    messages = [FakeMessage(channel, tag) for tag in range(1, 6)]
    event = outcome_event(1.0, attempt("p1"))
    results = await asyncio.gather(
        *(
            batcher.submit(event if i == 0 else outcome_event(1.0, attempt("p1")), m)
            for i, m in enumerate(messages)
        ),
        batcher.submit(event),
    )
    await batcher.close()
    assert sorted(results) == [False, True, True, True, True, True]
    assert len(store.batches) == 1
    assert [m.acks for m in messages] == [[], [], [], [], [True]]
    assert value(registry, "codexpool_health_events_processed_total", result="applied") == 5
    assert value(registry, "codexpool_health_events_processed_total", result="duplicate") == 1
    assert scores == [ProviderScore("p1", 90.0, "healthy", None)]


async def test_redis_errors_hold_the_batch_until_redis_answers() -> None:
    store = FakeStore([RedisConnectionError("down"), RedisConnectionError("still down")])
    batcher, registry = make(store, retry_max_s=0.01)
    await batcher.start()
    message = FakeMessage(FakeChannel(), 1)
    applied = await batcher.submit(outcome_event(1.0, attempt("p1")), message)
    await batcher.close()
    assert applied
    assert value(registry, "codexpool_health_redis_errors_total") == 2
    assert (message.acks, message.nacks) == ([True], [])


async def test_other_failures_nack_the_batch_for_redelivery() -> None:
    store = FakeStore([ResponseError("script error")])
    batcher, _ = make(store, retry_max_s=0.01)
    await batcher.start()
    message = FakeMessage(FakeChannel(), 1)
    with pytest.raises(ResponseError):
        await batcher.submit(outcome_event(1.0, attempt("p1")), message)
    await batcher.close()
    assert (message.acks, message.nacks) == ([], [True])


async def test_closing_fails_what_is_still_waiting() -> None:
    store = FakeStore([RedisConnectionError("down")] * 1000)
    batcher, _ = make(store, retry_max_s=0.01)
    await batcher.start()
    waiting = asyncio.ensure_future(batcher.submit(outcome_event(1.0, attempt("p1"))))
    await asyncio.sleep(0.05)
    await batcher.close()
    with pytest.raises(ShuttingDownError):
        await waiting
    with pytest.raises(ShuttingDownError):
        await batcher.submit(outcome_event(1.0, attempt("p1")))


async def test_a_backlog_is_applied_in_full_batches_and_a_trickle_without_waiting_for_one() -> None:
    store = FakeStore()
    batcher, _ = make(store, batch_size=50, linger_s=0.005, max_linger_s=0.2)
    await batcher.start()

    async def arrive(count: int, every_s: float) -> None:
        pending = []
        for _ in range(count):
            pending.append(asyncio.ensure_future(batcher.submit(outcome_event(1.0, attempt("p1")))))
            await asyncio.sleep(every_s)
        await asyncio.gather(*pending)

    # About 10 events per linger: a batch fills well within max_linger_s, so it waits for it
    # (with a single linger each would hold about 10).
    await arrive(150, 0.0005)
    assert max(len(b) for b in store.batches) == 50
    # One event per 100 ms: no batch would fill in time, each waits one linger only.
    store.batches.clear()
    await arrive(3, 0.1)
    await batcher.close()
    assert [len(b) for b in store.batches] == [1, 1, 1]


async def test_a_batch_is_one_consumer_span_linked_to_every_producer() -> None:
    telemetry.configure("codexpool-health-test")
    store = FakeStore()
    batcher, _ = make(store, linger_s=0.01, queue="ns.health.outcomes")
    await batcher.start()
    tracer = trace.get_tracer("test")
    producers = []
    messages = []
    for tag in range(1, 4):
        with tracer.start_as_current_span(f"publish {tag}") as producer:
            carrier: dict[str, object] = {}
            propagate.inject(carrier)
        producers.append(producer.get_span_context())
        messages.append(FakeMessage(FakeChannel(), tag, carrier))
    with telemetry.capture_spans() as exporter:
        await asyncio.gather(
            *(
                batcher.submit(outcome_event(1.0, attempt("p1")), cast(Delivery, m))
                for m in messages
            )
        )
        await batcher.close()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    batch, applied = spans["process ns.health.outcomes"], spans["apply outcomes"]
    assert batch.kind is trace.SpanKind.CONSUMER
    # In the first event's trace, and linked to the others' producers.
    assert batch.parent is not None and batch.parent.span_id == producers[0].span_id
    assert batch.context.trace_id == producers[0].trace_id
    assert [link.context.span_id for link in batch.links] == [p.span_id for p in producers[1:]]
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3
    assert batch.attributes["messaging.rabbitmq.destination.routing_key"] == "request.outcome.v1"
    assert applied.parent is not None and applied.parent.span_id == batch.context.span_id
