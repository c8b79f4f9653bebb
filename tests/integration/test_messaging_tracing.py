"""W3C trace context survives publisher -> RabbitMQ -> consumer."""

from __future__ import annotations

import asyncio
import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from codexpool_shared import telemetry
from codexpool_shared.events import Event
from codexpool_shared.messaging import (
    EventConsumer,
    EventPublisher,
    MessageInfo,
    Topology,
    acking,
)
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.messaging import sample_outcome

pytestmark = pytest.mark.timeout(60)


async def test_consumer_span_continues_the_request_trace(
    infra: InfraUrls, namespace: str, amqp_channel: object
) -> None:
    telemetry.configure("codexpool-integration")
    handled = asyncio.Event()
    handler_trace_ids: list[int] = []

    async def handler(event: Event, info: MessageInfo) -> None:
        handler_trace_ids.append(trace.get_current_span().get_span_context().trace_id)
        handled.set()

    consumer = EventConsumer(
        infra.amqp_url, Topology(namespace).health_queue, acking(handler), connect_timeout_s=20
    )
    publisher = EventPublisher(
        infra.amqp_url, namespace, name="trace test publisher", connect_timeout_s=20
    )
    await consumer.start()
    await publisher.start()
    try:
        with telemetry.capture_spans() as exporter:
            with trace.get_tracer("test").start_as_current_span("POST /v1/responses") as request:
                publisher.publish(sample_outcome())
            # The request is over before the event is even sent: as in the router.
            await asyncio.wait_for(handled.wait(), 20)
            spans = await _spans_named(exporter, "publish", "process", timeout_s=10)
    finally:
        await publisher.close(deadline_s=2)
        await consumer.stop(timeout_s=5)

    request_context = request.get_span_context()
    producer, consumed = spans["publish"], spans["process"]
    assert producer.kind is trace.SpanKind.PRODUCER
    assert consumed.kind is trace.SpanKind.CONSUMER
    assert {producer.context.trace_id, consumed.context.trace_id, *handler_trace_ids} == {
        request_context.trace_id
    }
    # The chain: request <- publish (emitted by the background task) <- process.
    assert producer.parent is not None and producer.parent.span_id == request_context.span_id
    assert consumed.parent is not None and consumed.parent.span_id == producer.context.span_id
    assert producer.attributes is not None
    assert producer.attributes["messaging.destination.name"] == Topology(namespace).exchange
    assert producer.attributes["messaging.rabbitmq.destination.routing_key"] == (
        "request.outcome.v1"
    )


async def _spans_named(
    exporter: InMemorySpanExporter, *prefixes: str, timeout_s: float
) -> dict[str, ReadableSpan]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = {
            prefix: span
            for span in exporter.get_finished_spans()
            for prefix in prefixes
            if span.name.startswith(prefix + " ")
        }
        if len(found) == len(prefixes) or time.monotonic() > deadline:
            assert len(found) == len(prefixes), [s.name for s in exporter.get_finished_spans()]
            return found
        await asyncio.sleep(0.02)
