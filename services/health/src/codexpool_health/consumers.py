"""The health queue's consumer: the shared ``EventConsumer``, handing outcomes to the batcher.

The shared consumer reconnects on its own, declares the namespace's topology on every connect,
dead-letters bodies that do not decode (counted here as ``malformed`` too) and runs each delivery
in its CONSUMER span. This handler passes each outcome with its delivery to the batcher, which
acks a whole batch with one ``multiple=True`` frame once it is in Redis; anything else routed to
the queue is acked at once and counted as ``ignored``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from codexpool_health.batcher import OutcomeBatcher
from codexpool_health.metrics import HealthMetrics
from codexpool_shared.events import Event, RequestOutcomeV1
from codexpool_shared.messaging import Delivery, EventConsumer, Topology


def outcome_consumer(
    amqp_url: str,
    namespace: str,
    batcher: OutcomeBatcher,
    metrics: HealthMetrics,
    registry: CollectorRegistry,
    *,
    prefetch: int = 200,
    name: str = "codexpool-health",
) -> EventConsumer:
    """A consumer of the namespace's health queue into ``batcher``; ``start()`` it."""

    async def handle(event: Event, delivery: Delivery) -> None:
        if not isinstance(event, RequestOutcomeV1):
            # Only outcomes are bound to this queue; anything else is acked and counted.
            metrics.processed["ignored"].inc()
            await delivery.ack()
            return
        # Settled by the batcher: acked with its batch, or nacked if the batch fails.
        await batcher.submit(event, delivery)

    return EventConsumer(
        amqp_url,
        Topology(namespace).health_queue,
        handle,
        registry=registry,
        name=name,
        prefetch=prefetch,
        declare=namespace,
        on_malformed=metrics.processed["malformed"].inc,
    )
