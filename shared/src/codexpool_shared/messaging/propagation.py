"""W3C trace context across RabbitMQ, and the messaging spans (OTel semantic conventions).

The tracer is looked up at call time, not import time, so a tracer provider installed later (by
``telemetry.configure()`` or a test) is the one that records these spans. It is cached per
provider: the SDK builds a new tracer on every ``get_tracer`` call, a third of a span's cost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

TRACER_NAME = "codexpool_shared.messaging"

Carrier = dict[str, str]
"""W3C ``traceparent`` / ``tracestate`` (and baggage) headers as a plain dict."""


_tracers: dict[TracerProvider, Tracer] = {}


def _tracer() -> Tracer:
    provider = trace.get_tracer_provider()
    tracer = _tracers.get(provider)
    if tracer is None:
        tracer = _tracers[provider] = provider.get_tracer(TRACER_NAME)
    return tracer


def capture_context() -> Carrier:
    """The caller's current trace context, serialised; empty when no span is active.

    ``EventPublisher.publish`` calls this so the event's spans join the HTTP request that made
    it, not the background task that later sends it.
    """
    carrier: Carrier = {}
    propagate.inject(carrier)
    return carrier


def _attributes(
    exchange: str, routing_key: str, message_id: str | None, operation: str
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.operation.type": operation,
        "messaging.operation.name": "publish" if operation == "send" else operation,
    }
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    return attributes


def start_producer_span(
    carrier: Carrier | Context,
    *,
    exchange: str,
    routing_key: str,
    message_id: str,
    start_time_ns: int,
) -> tuple[Span, Carrier]:
    """Start the PRODUCER span of one publish, as a child of the captured context.

    Args:
        carrier: What ``capture_context`` returned when the event was published, or the
            context itself (``EventPublisher`` keeps it: serialising it at ``publish()`` and
            parsing it back here cost more than the span).
        exchange: The exchange the message goes to.
        routing_key: Its routing key (the event type).
        message_id: The AMQP ``message_id`` (the event id).
        start_time_ns: When ``publish()`` was called, so the span covers the time in the buffer.

    Returns:
        The started span (the caller ends it once the broker confirms or the attempt fails)
        and the headers that carry it to consumers.
    """
    parent = carrier if isinstance(carrier, Context) else propagate.extract(carrier)
    span = _tracer().start_span(
        f"publish {exchange}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=_attributes(exchange, routing_key, message_id, "send"),
        start_time=start_time_ns,
    )
    headers: Carrier = {}
    propagate.inject(headers, context=trace.set_span_in_context(span, parent))
    return span, headers


def extract(headers: Mapping[str, object] | None) -> Context:
    """The trace context in AMQP headers (values may arrive as ``str`` or ``bytes``)."""
    carrier: Carrier = {}
    for key, value in (headers or {}).items():
        if isinstance(value, bytes):
            carrier[key] = value.decode(errors="replace")
        elif isinstance(value, str):
            carrier[key] = value
    return propagate.extract(carrier)


@contextmanager
def consumer_span(
    headers: Mapping[str, object] | None,
    *,
    exchange: str,
    routing_key: str,
    message_id: str,
    queue: str,
) -> Iterator[Span]:
    """A current CONSUMER span around handling one message, child of its producer span."""
    with _tracer().start_as_current_span(
        f"process {queue}",
        context=extract(headers),
        kind=SpanKind.CONSUMER,
        attributes=_attributes(exchange, routing_key, message_id, "process"),
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        yield span


@contextmanager
def batch_consumer_span(
    headers: Sequence[Mapping[str, object] | None],
    *,
    exchange: str,
    routing_key: str,
    queue: str,
) -> Iterator[Span]:
    """A current CONSUMER span around handling a batch of messages together.

    The OTel messaging conventions give a batch one span with a link to each message's
    creation context; this one is also the child of the first message's producer span, so a
    trace whose event came first (or alone, as at a low rate) shows its consumer in line. The
    other producer contexts are parsed only when the span is recorded.

    Args:
        headers: The AMQP headers of each message, in the batch's order.
        exchange: The exchange they came through.
        routing_key: Their routing key (the event type).
        queue: The queue they were consumed from.
    """
    with _tracer().start_as_current_span(
        f"process {queue}",
        context=extract(headers[0]) if headers else None,
        kind=SpanKind.CONSUMER,
        attributes={
            **_attributes(exchange, routing_key, None, "process"),
            "messaging.batch.message_count": len(headers),
        },
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        if span.is_recording():
            for carrier in headers[1:]:
                producer = trace.get_current_span(extract(carrier)).get_span_context()
                if producer.is_valid:
                    span.add_link(producer)
        yield span
