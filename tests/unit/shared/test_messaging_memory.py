"""InMemoryPublisher, and the publish-time trace capture both publishers share."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from codexpool_shared import telemetry
from codexpool_shared.events import Event
from codexpool_shared.messaging import MessageInfo, Publisher, PublisherStateError
from codexpool_shared.messaging.propagation import start_producer_span
from codexpool_shared.testing.messaging import InMemoryPublisher, sample_outcome


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
