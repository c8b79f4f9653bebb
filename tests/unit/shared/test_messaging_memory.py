"""InMemoryPublisher, InMemoryBroker specifics, and the publish-time trace capture both
publishers share (the behaviour both brokers share is in tests/messaging_suite.py)."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from codexpool_shared import telemetry
from codexpool_shared.events import Event, PoolChangedV1
from codexpool_shared.messaging import (
    Delivery,
    EventConsumer,
    MessageInfo,
    Publisher,
    PublisherStateError,
)
from codexpool_shared.messaging.propagation import start_producer_span
from codexpool_shared.testing.broker import InMemoryBroker, UnknownDeliveryTagError
from codexpool_shared.testing.messaging import InMemoryPublisher, sample_outcome
from tests.messaging_suite import eventually

pytestmark = pytest.mark.timeout(20)


async def test_lifecycle_matches_the_real_publisher() -> None:
    publisher: Publisher = InMemoryPublisher()
    with pytest.raises(PublisherStateError, match="start"):
        publisher.publish(sample_outcome())
    await publisher.start()
    publisher.publish(sample_outcome())
    await publisher.close()
    with pytest.raises(PublisherStateError, match="closed"):
        publisher.publish(sample_outcome())


async def test_deliver_runs_events_through_the_codec() -> None:
    publisher = InMemoryPublisher("unit")
    await publisher.start()
    events = [sample_outcome(), sample_outcome(agent_id="other")]
    for event in events:
        publisher.publish(event)
    received: list[tuple[Event, MessageInfo]] = []

    async def handler(event: Event, info: MessageInfo) -> None:
        received.append((event, info))

    assert await publisher.deliver(handler) == events
    assert [info.message_id for _, info in received] == [str(e.event_id) for e in events]
    assert {info.exchange for _, info in received} == {"unit.events"}
    assert publisher.stats.published == 2


async def test_publish_captures_the_callers_trace_context() -> None:
    telemetry.configure("codexpool-unit")
    publisher = InMemoryPublisher()
    await publisher.start()
    tracer = trace.get_tracer("test")
    with telemetry.capture_spans() as spans:
        with tracer.start_as_current_span("POST /v1/responses") as request:
            publisher.publish(sample_outcome())
        carrier = publisher.published[0].carrier
        # Later, from another task with no current span: the producer still joins the request.
        producer, headers = start_producer_span(
            carrier,
            exchange="codexpool.events",
            routing_key="request.outcome.v1",
            message_id="m-1",
            start_time_ns=1,
        )
        producer.end()
    assert carrier["traceparent"].split("-")[2] == format(
        request.get_span_context().span_id, "016x"
    )
    finished = {span.name: span for span in spans.get_finished_spans()}
    span = finished["publish codexpool.events"]
    assert span.kind is trace.SpanKind.PRODUCER
    assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
    assert span.attributes == {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": "codexpool.events",
        "messaging.rabbitmq.destination.routing_key": "request.outcome.v1",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.message.id": "m-1",
    }
    assert headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")


async def test_broker_settles_many_with_one_ack_and_refuses_unknown_tags() -> None:
    broker = InMemoryBroker("unit")
    queue = broker.topology.health_queue
    held: list[Delivery] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        held.append(delivery)

    consumer = EventConsumer("amqp://memory/", queue, handler)
    broker.consume(queue, consumer.on_message)
    publisher = InMemoryPublisher(broker=broker)
    await publisher.start()
    for _ in range(3):
        publisher.publish(sample_outcome())
    await eventually(lambda: len(held) == 3, timeout_s=5, what="deliveries")
    assert len(held) == 3 and len(broker.queues[queue].unacked) == 3
    await held[1].ack(multiple=True)  # the first two
    assert len(broker.queues[queue].unacked) == 1
    with pytest.raises(UnknownDeliveryTagError):
        await held[0].ack()
    await broker.cancel(queue)  # the third returns to the queue, marked redelivered
    [left] = broker.queues[queue].ready
    assert left.redelivered and left.delivery_count == 0
    assert consumer.stats.results == {"applied": 3}


async def test_broker_returns_unroutable_events_to_the_publishers_counters() -> None:
    publisher = InMemoryPublisher(broker=InMemoryBroker("unit"))
    await publisher.start()
    publisher.publish(
        PoolChangedV1(
            agent_id="a", change="updated", version=2, strategy=None, providers=(), actor="t"
        )
    )
    assert publisher.stats.dropped == {"unroutable": 1}
    assert publisher.stats.published == 0
    assert len(publisher.events) == 1  # recorded all the same
