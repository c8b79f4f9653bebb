"""Prometheus metrics of the publisher and the consumer, on a registry the app owns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge

DropReason = Literal["buffer_full", "shutdown", "unroutable"]
"""Why an event was never confirmed by RabbitMQ.

- ``buffer_full``: ``publish()`` found the buffer full; the new event was dropped.
- ``shutdown``: still unconfirmed when ``close()``'s deadline passed (it may still have arrived).
- ``unroutable``: RabbitMQ returned it (``mandatory``): no queue is bound to its routing key.
"""

ConsumeResult = Literal["applied", "malformed", "failed"]
"""What became of one delivery.

- ``applied``: the handler returned (with ``acking``: the message was acked).
- ``malformed``: it could not be decoded; rejected without requeue, so it went to the DLQ.
- ``failed``: the handler raised (with ``acking``: nacked with requeue; the delivery limit bounds
  the retries).
"""

DROP_REASONS: tuple[DropReason, ...] = get_args(DropReason)
CONSUME_RESULTS: tuple[ConsumeResult, ...] = get_args(ConsumeResult)


class PublisherMetrics:
    """The publisher's metrics.

    ``codexpool_event_buffer_depth``, ``codexpool_events_published_total``,
    ``codexpool_events_dropped_total{reason}``, ``codexpool_events_publish_failures_total``.
    """

    def __init__(self, registry: CollectorRegistry, depth: Callable[[], float]) -> None:
        """Register the metrics; ``depth`` is read at scrape time (no cost per event)."""
        buffer_depth = Gauge(
            "codexpool_event_buffer_depth",
            "Events accepted by publish() and not yet confirmed by RabbitMQ",
            registry=registry,
        )
        buffer_depth.set_function(depth)
        self.published = Counter(
            "codexpool_events_published_total",
            "Events RabbitMQ confirmed",
            registry=registry,
        )
        self.failures = Counter(
            "codexpool_events_publish_failures_total",
            "Publish attempts that failed and will be retried (timeout, nack, lost connection)",
            registry=registry,
        )
        dropped = Counter(
            "codexpool_events_dropped_total",
            "Events given up on, by reason",
            ["reason"],
            registry=registry,
        )
        # Bound children: every reason is exported from the start, at zero.
        self.dropped = {reason: dropped.labels(reason) for reason in DROP_REASONS}


class ConsumerMetrics:
    """``codexpool_events_consumed_total{queue, result}``."""

    def __init__(self, registry: CollectorRegistry, queue: str) -> None:
        """Register the metric for one queue."""
        consumed = Counter(
            "codexpool_events_consumed_total",
            "Deliveries handled, by result",
            ["queue", "result"],
            registry=registry,
        )
        self.consumed = {result: consumed.labels(queue, result) for result in CONSUME_RESULTS}
