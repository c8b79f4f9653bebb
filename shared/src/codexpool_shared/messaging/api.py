"""The public types of messaging: what services and the in-memory fakes depend on.

``EventPublisher`` and ``testing.InMemoryPublisher`` both provide ``Publisher``; handlers of
``EventConsumer`` (and of ``InMemoryPublisher.deliver``) receive ``MessageInfo`` / ``Delivery``.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aio_pika.abc import AbstractChannel

from codexpool_shared.events import BaseEvent, Event
from codexpool_shared.messaging.metrics import ConsumeResult, DropReason


class Publisher(Protocol):
    """What services depend on; ``EventPublisher`` and ``testing.InMemoryPublisher`` provide it."""

    async def start(self) -> None:
        """Begin sending in the background; never waits for the broker."""

    def publish(self, event: BaseEvent) -> None:
        """Accept ``event`` for sending without waiting for the broker."""

    async def close(self, deadline_s: float = 5.0) -> None:
        """Send what is buffered within ``deadline_s``, then release everything."""


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


@dataclass(frozen=True, slots=True)
class Delivery:
    """A decoded event and its delivery facts, as a batch handler receives them."""

    event: Event
    info: MessageInfo


Handler = Callable[[Event, MessageInfo], Awaitable[None]]
"""Handles one event; raising means "transient failure, deliver it again later"."""

BatchHandler = Callable[[Sequence[Delivery]], Awaitable[None]]
"""Handles a batch; raising requeues the whole batch, so it must be idempotent per event."""

Setup = Callable[[AbstractChannel], Awaitable[object]]


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
