"""The AMQP topology of one namespace: exchanges, the health queue and its dead-letter queue.

Every name derives from the namespace, so parallel tests (each with its own namespace) never
share a queue, and ``delete_topology`` removes exactly what ``declare_topology`` made.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, FieldValue

from codexpool_shared.events import RequestOutcomeV1, event_type

DELIVERY_LIMIT = 5
"""Deliveries of one message to the health queue before RabbitMQ dead-letters it.

Set explicitly: RabbitMQ 3.x defaults to unlimited and 4.x to 20, and tests must behave the same
on both.
"""


@dataclass(frozen=True, slots=True)
class Topology:
    """The AMQP names of one namespace."""

    namespace: str

    @property
    def exchange(self) -> str:
        """Durable topic exchange every event is published to, routed by its ``type`` tag."""
        return f"{self.namespace}.events"

    @property
    def dlx(self) -> str:
        """Direct exchange receiving dead letters, routed by the name of the queue they left."""
        return f"{self.namespace}.dlx"

    @property
    def health_queue(self) -> str:
        """The health service's quorum queue of ``request.outcome.v1`` events."""
        return f"{self.namespace}.health.outcomes"

    @property
    def health_dlq(self) -> str:
        """Where the health queue's poison and over-delivered messages end up."""
        return f"{self.health_queue}.dlq"

    def queue_arguments(
        self, queue: str, *, delivery_limit: int = DELIVERY_LIMIT
    ) -> dict[str, FieldValue]:
        """Arguments of a consumer's quorum queue whose dead letters go to ``<queue>.dlq``.

        ``at-least-once`` dead-lettering (RabbitMQ 3.10+, needs the ``stream_queue`` feature flag)
        moves a dead letter with internal publisher confirms, so it cannot be lost between the
        queue and its DLQ; RabbitMQ only honours it together with ``reject-publish`` overflow.
        """
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": self.dlx,
            "x-dead-letter-routing-key": queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


OUTCOME_ROUTING_KEY = event_type(RequestOutcomeV1)


async def declare_queue(
    channel: AbstractChannel,
    topology: Topology,
    queue: str,
    routing_keys: tuple[str, ...],
    *,
    delivery_limit: int = DELIVERY_LIMIT,
) -> None:
    """Declare a consumer's quorum queue bound to ``routing_keys``, with its DLQ.

    The DLQ is declared and bound before the queue so that no dead letter is ever unroutable.
    Declaring is idempotent; arguments that differ from an existing queue's are a channel error
    (``PRECONDITION_FAILED``), which is what should happen when two services disagree.
    """
    exchange = await channel.declare_exchange(
        topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dlx = await channel.declare_exchange(topology.dlx, aio_pika.ExchangeType.DIRECT, durable=True)
    dlq = await channel.declare_queue(
        f"{queue}.dlq", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dlq.bind(dlx, routing_key=queue)
    declared = await channel.declare_queue(
        queue,
        durable=True,
        arguments=topology.queue_arguments(queue, delivery_limit=delivery_limit),
    )
    for key in routing_keys:
        await declared.bind(exchange, routing_key=key)


async def declare_topology(channel: AbstractChannel, namespace: str) -> Topology:
    """Declare the events exchange, the dead-letter exchange and the health queue with its DLQ.

    Every service may call this at start-up: publishers then never see an unroutable outcome
    event just because the health service has not started yet.

    Args:
        channel: An open channel; it is closed by RabbitMQ if an existing entity disagrees.
        namespace: The namespace every name derives from.

    Returns:
        The names that were declared.
    """
    topology = Topology(namespace)
    await declare_queue(channel, topology, topology.health_queue, (OUTCOME_ROUTING_KEY,))
    return topology


async def delete_topology(channel: AbstractChannel, namespace: str) -> None:
    """Delete everything ``declare_topology`` declared for ``namespace`` (tests clean up with it).

    Args:
        channel: An open channel.
        namespace: The namespace whose queues and exchanges go.
    """
    topology = Topology(namespace)
    for queue in (topology.health_queue, topology.health_dlq):
        await channel.queue_delete(queue)
    for exchange in (topology.exchange, topology.dlx):
        await channel.exchange_delete(exchange)
