"""An in-memory RabbitMQ for one namespace, shared by a publisher and a consumer in unit tests.

It models what the messaging behaviour suite (``tests/messaging_suite.py``) asserts on the real
broker: routing by the keys ``declare_topology`` binds (an event no queue takes is unroutable);
one task per delivery, up to ``prefetch`` unsettled, settled through the real ``Delivery`` (the
queue is its ``api.SettleTarget``); a requeue grows ``x-delivery-count`` and past
``DELIVERY_LIMIT`` dead-letters (as RabbitMQ 3.x quorum queues do), a reject dead-letters at
once, into ``<queue>.dlq`` with an ``x-death`` reason. Bodies are the real codec's; ``publish``
runs in the real PRODUCER span, whose W3C context reaches ``EventConsumer.on_message``::

    broker = InMemoryBroker("unit")
    publisher = InMemoryPublisher(broker=broker)  # routes what it records
    consumer = EventConsumer("amqp://memory/", broker.topology.health_queue, acking(handler))
    broker.consume(broker.topology.health_queue, consumer.on_message)  # never start() it
    ...
    await broker.cancel(broker.topology.health_queue)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp import commands as spec
from pamqp.common import FieldTable
from pamqp.header import ContentHeader

from codexpool_shared.events import BaseEvent, event_type
from codexpool_shared.messaging import codec
from codexpool_shared.messaging.propagation import Carrier, start_producer_span
from codexpool_shared.messaging.topology import DELIVERY_LIMIT, OUTCOME_ROUTING_KEY, Topology

OnMessage = Callable[[DeliveredMessage], Coroutine[Any, Any, None]]
"""What a consumer gives ``consume``: ``EventConsumer.on_message``, or any such callable."""


class UnknownDeliveryTagError(LookupError):
    """A settle frame for a delivery that is not outstanding (RabbitMQ closes the channel)."""


@dataclass(slots=True)
class Message:
    """A message in a queue: what was published, and what happened to it since."""

    body: bytes
    message_id: str | None
    exchange: str
    routing_key: str
    headers: dict[str, object] = field(default_factory=dict)
    delivery_count: int = 0
    """Returns to the queue so far (``x-delivery-count``)."""
    redelivered: bool = False

    @property
    def death_reason(self) -> str | None:
        """Why it was dead-lettered (``x-death[0].reason``), or None."""
        deaths = self.headers.get("x-death")
        if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
            return str(deaths[0]["reason"])
        return None


class Queue:
    """One queue with at most one consumer; the ``SettleTarget`` of the deliveries it makes."""

    def __init__(
        self,
        name: str,
        *,
        dead_letters: tuple[str, Queue] | None = None,
        delivery_limit: int | None = None,
    ) -> None:
        """A queue named ``name``, dead-lettering through an exchange to a queue (if any)."""
        self.name = name
        self.ready: deque[Message] = deque()
        """Messages waiting for a consumer, oldest first."""
        self.unacked: dict[int, Message] = {}
        """Messages delivered and not settled yet, by delivery tag."""
        self._dead_letters = dead_letters
        self._delivery_limit = delivery_limit
        self._tags = itertools.count(1)
        self._consumer: OnMessage | None = None
        self._prefetch = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def put(self, message: Message) -> None:
        """Enqueue ``message`` and deliver it if the consumer has room."""
        self.ready.append(message)
        self._dispatch()

    def get(self) -> Message | None:
        """Take the oldest ready message, settled at once (``basic_get`` with ``no_ack``)."""
        return self.ready.popleft() if self.ready else None

    def consume(self, on_message: OnMessage, prefetch: int) -> None:
        """Deliver to ``on_message``, each delivery in a task of its own, as aiormq does."""
        if self._consumer is not None:
            raise RuntimeError(f"{self.name} has a consumer already")
        self._consumer, self._prefetch = on_message, prefetch
        self._dispatch()

    async def cancel(self, timeout_s: float = 5.0) -> None:
        """Stop delivering, wait for handlers in flight, and requeue what is left unsettled.

        As when a consumer's connection closes: unsettled messages return to the queue, in
        their order, marked redelivered (without counting towards the delivery limit).
        """
        self._consumer = None
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()
        for tag in sorted(self.unacked, reverse=True):
            message = self.unacked.pop(tag)
            message.redelivered = True
            self.ready.appendleft(message)

    # SettleTarget ------------------------------------------------------------------------------

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        """Settle as handled (and every older outstanding delivery, with ``multiple``)."""
        for tag in self._settled(delivery_tag, multiple):
            del self.unacked[tag]
        self._dispatch()

    async def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True
    ) -> None:
        """Requeue (counted towards the delivery limit) or dead-letter as ``rejected``."""
        for tag in self._settled(delivery_tag, multiple):
            message = self.unacked.pop(tag)
            if not requeue:
                self._dead_letter(message, "rejected")
                continue
            message.delivery_count += 1
            message.redelivered = True
            if self._delivery_limit is not None and message.delivery_count > self._delivery_limit:
                self._dead_letter(message, "delivery_limit")
            else:
                self.ready.appendleft(message)  # quorum queues redeliver returns first
        self._dispatch()

    async def basic_reject(self, delivery_tag: int, *, requeue: bool = True) -> None:
        """As ``basic_nack`` of that one delivery."""
        await self.basic_nack(delivery_tag, requeue=requeue)

    # Internals ---------------------------------------------------------------------------------

    def _settled(self, delivery_tag: int, multiple: bool) -> list[int]:
        if delivery_tag not in self.unacked:
            raise UnknownDeliveryTagError(f"unknown delivery tag {delivery_tag} on {self.name}")
        return [t for t in self.unacked if t <= delivery_tag] if multiple else [delivery_tag]

    def _dead_letter(self, message: Message, reason: str) -> None:
        if self._dead_letters is None:
            return  # RabbitMQ drops it
        dlx, dlq = self._dead_letters
        death = {"reason": reason, "queue": self.name, "exchange": message.exchange, "count": 1}
        headers = dict(message.headers)
        headers.pop("x-delivery-count", None)
        headers["x-death"] = [death]
        dlq.put(Message(message.body, message.message_id, dlx, self.name, headers))

    def _dispatch(self) -> None:
        consumer = self._consumer
        while consumer is not None and self.ready and len(self.unacked) < self._prefetch:
            message = self.ready.popleft()
            tag = next(self._tags)
            self.unacked[tag] = message
            headers = dict(message.headers)
            if message.delivery_count:
                headers["x-delivery-count"] = message.delivery_count
            delivered = DeliveredMessage(
                delivery=spec.Basic.Deliver(
                    consumer_tag=f"memory.{self.name}",
                    delivery_tag=tag,
                    redelivered=message.redelivered,
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                ),
                header=ContentHeader(
                    properties=spec.Basic.Properties(
                        content_type=codec.CONTENT_TYPE,
                        message_id=message.message_id,
                        message_type=message.routing_key,
                        headers=cast(FieldTable, headers),
                    )
                ),
                body=message.body,
                # The queue is a SettleTarget; DeliveredMessage merely names aiormq's channel.
                channel=cast(AbstractChannel, self),
            )
            task = asyncio.get_running_loop().create_task(consumer(delivered))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


class InMemoryBroker:
    """The queues and exchanges ``declare_topology`` makes for one namespace, in memory."""

    def __init__(self, namespace: str = "codexpool", *, delivery_limit: int = DELIVERY_LIMIT):
        """A broker with the namespace's topology declared."""
        self.topology = Topology(namespace)
        dlq = Queue(self.topology.health_dlq)
        health = Queue(
            self.topology.health_queue,
            dead_letters=(self.topology.dlx, dlq),
            delivery_limit=delivery_limit,
        )
        self.queues: dict[str, Queue] = {queue.name: queue for queue in (health, dlq)}
        """Every queue, by name."""
        self._bindings: dict[str, tuple[Queue, ...]] = {OUTCOME_ROUTING_KEY: (health,)}

    def publish(self, event: BaseEvent, carrier: Carrier | None = None) -> bool:
        """Route ``event`` as ``EventPublisher`` sends it; False when it is unroutable.

        It runs in a PRODUCER span, child of ``carrier`` (``capture_context`` at ``publish()``).
        """
        routing_key, message_id = event_type(type(event)), str(event.event_id)
        span, headers = start_producer_span(
            carrier or {},
            exchange=self.topology.exchange,
            routing_key=routing_key,
            message_id=message_id,
            start_time_ns=time.time_ns(),
        )
        try:
            body = codec.encode(event)
            return self.publish_raw(body, routing_key, message_id=message_id, headers=headers)
        finally:
            span.end()

    def publish_raw(
        self,
        body: bytes,
        routing_key: str,
        *,
        message_id: str | None = None,
        headers: Carrier | None = None,
    ) -> bool:
        """Route any body (a malformed one, say) to the queues bound to ``routing_key``."""
        queues = self._bindings.get(routing_key, ())
        for queue in queues:
            queue.put(
                Message(body, message_id, self.topology.exchange, routing_key, dict(headers or {}))
            )
        return bool(queues)

    def consume(self, queue: str, on_message: OnMessage, *, prefetch: int = 200) -> None:
        """Deliver ``queue``'s messages to ``on_message`` (``EventConsumer.on_message``)."""
        self.queues[queue].consume(on_message, prefetch)

    async def cancel(self, queue: str, timeout_s: float = 5.0) -> None:
        """Stop consuming ``queue`` (see ``Queue.cancel``)."""
        await self.queues[queue].cancel(timeout_s)
