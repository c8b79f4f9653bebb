"""The public types of messaging: what services and the in-memory fakes depend on.

``EventPublisher`` and ``testing.InMemoryPublisher`` both provide ``Publisher``. ``EventConsumer``
hands each event with its ``Delivery`` to a ``SettlingHandler``; ``acking`` turns a ``Handler``
(the event and its ``MessageInfo``, as ``InMemoryPublisher.deliver`` also calls it) into one.
A ``Delivery`` settles through a ``SettleTarget``: aiormq's channel on the real broker,
``testing.broker.InMemoryBroker``'s queue in unit tests.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiormq.abc import DeliveredMessage

from codexpool_shared.events import BaseEvent, EncodedEvent, Event
from codexpool_shared.messaging.metrics import ConsumeResult, DropReason


class Publisher(Protocol):
    """What services depend on; ``EventPublisher`` and ``testing.InMemoryPublisher`` provide it."""

    async def start(self) -> None:
        """Begin sending in the background; never waits for the broker."""

    def publish(self, event: BaseEvent | EncodedEvent) -> None:
        """Accept ``event`` (a model, or one already encoded) for sending without waiting."""

    async def close(self, deadline_s: float = 5.0) -> None:
        """Send what is buffered within ``deadline_s``, then release everything."""


class SettleTarget(Protocol):
    """Where a ``Delivery``'s settle frames go: aiormq's channel, or the in-memory broker's queue.

    aiormq's ``AbstractChannel`` provides it as it is; ``testing.broker.InMemoryBroker``
    implements it too, so one ``Delivery`` (and one ``EventConsumer.on_message``) serves both.
    """

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> Awaitable[None]:
        """Settle ``delivery_tag`` (and, with ``multiple``, every older one) as handled."""
        ...

    def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True
    ) -> Awaitable[None]:
        """Settle ``delivery_tag`` as not handled: requeued, or dead-lettered without requeue."""
        ...

    def basic_reject(self, delivery_tag: int, *, requeue: bool = True) -> Awaitable[None]:
        """Settle ``delivery_tag`` as not handled, as ``basic_nack`` without ``multiple``."""
        ...


class PublisherState(enum.Enum):
    """Lifecycle of an ``EventPublisher``: NEW -> RUNNING -> CLOSING -> CLOSED, never back."""

    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class PublisherStateError(RuntimeError):
    """The publisher was used before ``start()`` or after ``close()``."""


@dataclass(slots=True)
class PublisherStats:
    """Plain counters mirroring the Prometheus metrics, for tests and logs."""

    published: int = 0
    failures: int = 0
    dropped: Counter[DropReason] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """The AMQP facts about a delivery that a handler may care about."""

    message_id: str | None
    """The AMQP ``message_id``: the event id for events from ``EventPublisher``."""

    exchange: str
    routing_key: str
    redelivered: bool
    """RabbitMQ delivered it before (another consumer may have handled it: be idempotent)."""

    delivery_count: int
    """Earlier failed deliveries (quorum queue ``x-delivery-count``); 0 on the first."""


class Delivery:
    """One delivery of a decoded event: its body, its AMQP facts, and the way to settle it.

    Whoever holds it settles it once: ``ack``, ``nack`` or ``reject``. A delivery never settled
    returns to the queue when its connection closes. The methods raise once the channel is gone
    (a lost connection); RabbitMQ then redelivers the message on its own.
    """

    # A thin view of aiormq's message, built per delivery: nothing is copied until it is asked for.
    __slots__ = ("_message",)

    def __init__(self, message: DeliveredMessage) -> None:
        """Wrap a message as aiormq delivered it."""
        self._message = message

    @property
    def body(self) -> bytes:
        """The message body, as received (the encoded event)."""
        return self._message.body

    @property
    def channel(self) -> SettleTarget:
        """The channel it came on; ``ack(multiple=True)`` reaches deliveries of that one only."""
        return self._message.channel

    @property
    def headers(self) -> Mapping[str, object] | None:
        """Its AMQP headers (the producer's W3C trace context among them)."""
        return self._message.header.properties.headers

    @property
    def info(self) -> MessageInfo:
        """Its AMQP facts (message id, exchange, routing key, redelivery)."""
        message = self._message
        properties = message.header.properties
        count = (properties.headers or {}).get("x-delivery-count", 0)
        return MessageInfo(
            message_id=properties.message_id,
            exchange=message.exchange or "",
            routing_key=message.routing_key or "",
            redelivered=bool(message.redelivered),
            delivery_count=count if isinstance(count, int) else 0,
        )

    async def ack(self, *, multiple: bool = False) -> None:
        """Settle it as handled.

        Args:
            multiple: Also ack every older unsettled delivery of the same channel, so that one
                frame settles a whole batch (deliveries already nacked or rejected are not
                touched).
        """
        await self._message.channel.basic_ack(self._delivery_tag, multiple=multiple)

    async def nack(self, *, requeue: bool = True) -> None:
        """Settle it as not handled; requeued, it counts towards the queue's delivery limit."""
        await self._message.channel.basic_nack(self._delivery_tag, requeue=requeue)

    async def reject(self) -> None:
        """Give up on it without requeue: the queue's dead-letter exchange gets it."""
        await self._message.channel.basic_reject(self._delivery_tag, requeue=False)

    @property
    def _delivery_tag(self) -> int:
        return self._message.delivery_tag or 0


Handler = Callable[[Event, MessageInfo], Awaitable[None]]
"""Handles one event; raising means "transient failure, deliver it again later" (see ``acking``)."""

SettlingHandler = Callable[[Event, Delivery], Awaitable[None]]
"""What ``EventConsumer`` awaits per delivery: handle the event and settle the delivery, at once
or later (a batcher may ack many with one frame). Returning counts it ``applied``, raising
``failed``; either way settling is the handler's business.
"""


class ConsumerState(enum.Enum):
    """Lifecycle of an ``EventConsumer``: NEW -> RUNNING -> STOPPING -> STOPPED."""

    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class ConsumerStateError(RuntimeError):
    """The consumer was started twice, or after it stopped."""


@dataclass(slots=True)
class ConsumerStats:
    """Plain counters mirroring ``codexpool_events_consumed_total``, for tests and logs."""

    results: Counter[ConsumeResult] = field(default_factory=Counter)
