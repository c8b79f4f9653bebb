"""EventConsumer's settle rules, driven with fake deliveries (no broker)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from codexpool_shared import telemetry
from codexpool_shared.events import Event
from codexpool_shared.messaging import (
    ConsumerState,
    Delivery,
    EventConsumer,
    MessageInfo,
    encode,
)
from codexpool_shared.messaging.propagation import start_producer_span
from codexpool_shared.testing.messaging import sample_outcome

pytestmark = pytest.mark.timeout(20)


CHANNEL = object()
_tags = itertools.count(1)


@dataclass
class FakeMessage:
    """The parts of an aio-pika delivery that EventConsumer uses."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = "m-1"
    exchange: str = "unit.events"
    routing_key: str = "request.outcome.v1"
    redelivered: bool = False
    channel: object = CHANNEL
    delivery_tag: int = field(default_factory=lambda: next(_tags))
    settled: list[str] = field(default_factory=list)

    async def ack(self, multiple: bool = False) -> None:
        self.settled.append("ack multiple" if multiple else "ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append(f"nack requeue={requeue}")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append(f"reject requeue={requeue}")


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not check():
            await asyncio.sleep(0.002)


def _consumer(**kw: Any) -> EventConsumer:
    return EventConsumer(
        "amqp://unused/", "unit.health.outcomes", retry_delay_s=(0.001, 0.01), **kw
    )


async def test_handled_event_is_acked_and_counted() -> None:
    seen: list[tuple[Event, MessageInfo]] = []

    async def handler(event: Event, info: MessageInfo) -> None:
        seen.append((event, info))

    registry = CollectorRegistry()
    consumer = _consumer(handler=handler, registry=registry)
    event = sample_outcome()
    message = FakeMessage(encode(event), headers={"x-delivery-count": 2}, redelivered=True)
    await consumer._on_message(message)  # type: ignore[arg-type]

    await eventually(lambda: message.settled == ["ack multiple"])
    assert seen == [
        (event, MessageInfo("m-1", "unit.events", "request.outcome.v1", True, delivery_count=2))
    ]
    assert consumer.stats.results == {"applied": 1}
    labels = {"queue": "unit.health.outcomes", "result": "applied"}
    assert registry.get_sample_value("codexpool_events_consumed_total", labels) == 1


async def test_malformed_message_is_rejected_without_requeue() -> None:
    async def handler(event: Event, info: MessageInfo) -> None:
        raise AssertionError("never called")

    consumer = _consumer(handler=handler)
    message = FakeMessage(b'{"type": "request.outcome.v7"}')
    await consumer._on_message(message)  # type: ignore[arg-type]
    assert message.settled == ["reject requeue=False"]
    assert consumer.stats.results == {"malformed": 1}


async def test_handler_failure_is_requeued() -> None:
    async def handler(event: Event, info: MessageInfo) -> None:
        raise ConnectionError("redis is down")

    consumer = _consumer(handler=handler)
    message = FakeMessage(encode(sample_outcome()))
    await consumer._on_message(message)  # type: ignore[arg-type]
    assert message.settled == ["nack requeue=True"]
    assert consumer.stats.results == {"failed": 1}


async def test_batches_fill_up_or_time_out() -> None:
    batches: list[Sequence[Delivery]] = []

    async def batch_handler(deliveries: Sequence[Delivery]) -> None:
        batches.append(deliveries)

    consumer = _consumer(batch_handler=batch_handler, prefetch=100, batch_size=3)
    messages = [FakeMessage(encode(sample_outcome()), message_id=f"m-{i}") for i in range(4)]
    for message in messages:
        await consumer._on_message(message)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        while consumer.stats.results["applied"] < 4:
            await asyncio.sleep(0.005)
    assert [len(batch) for batch in batches] == [3, 1]  # full batch, then the window closed
    assert [d.info.message_id for batch in batches for d in batch] == [
        m.message_id for m in messages
    ]
    # One coalesced ack frame per batch, on its last delivery.
    await eventually(
        lambda: [m.settled for m in messages] == [[], [], ["ack multiple"], ["ack multiple"]]
    )


async def test_failed_batch_is_requeued_whole() -> None:
    async def batch_handler(deliveries: Sequence[Delivery]) -> None:
        raise TimeoutError("redis timed out")

    consumer = _consumer(batch_handler=batch_handler, prefetch=100, batch_size=2)
    messages = [FakeMessage(encode(sample_outcome())) for _ in range(2)]
    for message in messages:
        await consumer._on_message(message)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        while consumer.stats.results["failed"] < 2:
            await asyncio.sleep(0.005)
    assert all(m.settled == ["nack requeue=True"] for m in messages)


async def test_consumer_span_continues_the_producer_trace() -> None:
    telemetry.configure("codexpool-unit")

    async def handler(event: Event, info: MessageInfo) -> None:
        pass

    consumer = _consumer(handler=handler)
    with telemetry.capture_spans() as spans:
        producer, headers = start_producer_span(
            {}, exchange="unit.events", routing_key="r", message_id="m-1", start_time_ns=1
        )
        producer.end()
        await consumer._on_message(FakeMessage(encode(sample_outcome()), headers=dict(headers)))  # type: ignore[arg-type]
    by_name = {span.name: span for span in spans.get_finished_spans()}
    process = by_name["process unit.health.outcomes"]
    assert process.parent is not None
    assert process.parent.span_id == producer.get_span_context().span_id
    assert process.context.trace_id == producer.get_span_context().trace_id
    assert process.attributes is not None
    assert process.attributes["messaging.operation.type"] == "process"


def test_constructor_refuses_bad_settings() -> None:
    async def handler(event: Event, info: MessageInfo) -> None:
        pass

    with pytest.raises(ValueError, match="exactly one"):
        EventConsumer("amqp://unused/", "q")
    with pytest.raises(ValueError, match="prefetch"):
        EventConsumer("amqp://unused/", "q", handler, prefetch=1000)
    assert EventConsumer("amqp://unused/", "q", handler).state is ConsumerState.NEW


async def test_batch_spans_keep_each_message_in_its_producers_trace() -> None:
    telemetry.configure("codexpool-unit")

    async def batch_handler(deliveries: Sequence[Delivery]) -> None:
        raise ConnectionError("redis is down")

    consumer = _consumer(batch_handler=batch_handler, prefetch=100, batch_size=2)
    with telemetry.capture_spans() as spans:
        producers = []
        for index in range(2):
            producer, headers = start_producer_span(
                {}, exchange="e", routing_key="r", message_id=f"m-{index}", start_time_ns=1
            )
            producer.end()
            producers.append(producer)
            message = FakeMessage(encode(sample_outcome()), headers=dict(headers))
            await consumer._on_message(message)  # type: ignore[arg-type]
        await eventually(lambda: consumer.stats.results["failed"] == 2)
    finished = spans.get_finished_spans()
    [batch] = [s for s in finished if s.name == "process unit.health.outcomes batch"]
    per_message = [s for s in finished if s.name == "process unit.health.outcomes"]
    producer_ids = [p.get_span_context().span_id for p in producers]
    assert [link.context.span_id for link in batch.links] == producer_ids
    assert sorted(s.parent.span_id for s in per_message if s.parent) == sorted(producer_ids)
    assert all(not s.status.is_ok for s in [batch, *per_message])
