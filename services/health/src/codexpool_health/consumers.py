"""The health queue's consumer: the shared ``EventConsumer``, handing outcomes to the batcher.

The shared consumer reconnects on its own, declares the namespace's topology on every connect,
dead-letters bodies that do not decode (an unknown field included: event models forbid them)
and leaves tracing to the batcher (one CONSUMER span per batch, linking each delivery's
producer). This handler dead-letters outcomes that decode but
are not sane (``sanity.py``: a time far ahead or older than the hourly timeline, a name the
registry would refuse), passes each other outcome with its delivery to the batcher, which acks a
whole batch with one ``multiple=True`` frame once it is in Redis, and acks anything else routed
to the queue at once, counted as ``ignored``. Every dead letter is counted by reason in
``codexpool_health_events_rejected_total``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from codexpool_health.batcher import OutcomeBatcher
from codexpool_health.metrics import HealthMetrics
from codexpool_health.sanity import insanity
from codexpool_shared.events import Event, RequestOutcomeV1
from codexpool_shared.messaging import Delivery, EventConsumer, MalformedMessageError, Topology


def outcome_consumer(
    amqp_url: str,
    namespace: str,
    batcher: OutcomeBatcher,
    metrics: HealthMetrics,
    registry: CollectorRegistry,
    *,
    prefetch: int = 200,
    name: str = "codexpool-health",
    max_future_s: float = 300.0,
    max_event_age_s: float = 86_400.0,
) -> EventConsumer:
    """A consumer of the namespace's health queue into ``batcher``; ``start()`` it."""

    async def handle(event: Event, delivery: Delivery) -> None:
        if not isinstance(event, RequestOutcomeV1):
            # Only outcomes are bound to this queue; anything else is acked and counted.
            metrics.processed["ignored"].inc()
            await delivery.ack()
            return
        reason = insanity(event, time.time(), max_future_s=max_future_s, max_age_s=max_event_age_s)
        if reason is not None:
            metrics.processed["rejected"].inc()
            metrics.rejected[reason].inc()
            await delivery.reject()
            return
        # Settled by the batcher: acked with its batch, or nacked if the batch fails.
        await batcher.submit(event, delivery)

    def malformed(error: MalformedMessageError) -> None:
        metrics.processed["malformed"].inc()
        metrics.rejected[error.reason].inc()

    return EventConsumer(
        amqp_url,
        Topology(namespace).health_queue,
        handle,
        registry=registry,
        name=name,
        prefetch=prefetch,
        declare=namespace,
        on_malformed=malformed,
        span_per_delivery=False,
    )
