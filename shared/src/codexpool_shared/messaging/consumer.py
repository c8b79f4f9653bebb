"""The event consumer: one durable queue, manual settling, poison straight to the DLQ, reconnecting.

A supervisor task connects, declares the namespace's topology when asked to (``declare=``),
consumes until the connection closes, and connects again after a capped backoff. So ``start()``
returns at once and a service starts, and stays ready, while RabbitMQ is down.

Deliveries arrive on aiormq's channel under aio-pika's connection, for throughput: aio-pika's
``Queue.consume`` wraps every delivery in a second task and a message object, a fifth of the cost
per event at thousands per second (and its robust connection only restores consumers made
through it, hence the supervisor). aiormq runs one task per delivery, up to the prefetch:

- a body that does not decode is rejected without requeue (dead-lettered at once, never a requeue
  loop) and counted ``malformed``;
- otherwise the handler gets the event and its ``Delivery`` inside a CONSUMER span whose parent is
  the producer's (W3C trace context in the message headers), and settles the delivery at once
  (``acking``) or later (health's batcher acks a batch with one ``multiple=True`` frame). A
  handler that handles deliveries in batches traces them itself instead (``span_per_delivery=
  False``; ``propagation.batch_consumer_span``): a span per delivery took about 7 % of the health
  service's CPU even with tracing off.

Deliveries of a lost connection cannot be settled any more; RabbitMQ redelivers them, and handlers
are idempotent by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel, DeliveredMessage
from prometheus_client import CollectorRegistry

from codexpool_shared.events import Event
from codexpool_shared.messaging.api import (
    ConsumerState,
    ConsumerStateError,
    ConsumerStats,
    Delivery,
    Handler,
    SettlingHandler,
)
from codexpool_shared.messaging.codec import MalformedMessageError, decode
from codexpool_shared.messaging.connection import CONNECT_TIMEOUT_S, close_quietly, connect
from codexpool_shared.messaging.metrics import ConsumeResult, ConsumerMetrics
from codexpool_shared.messaging.propagation import consumer_span
from codexpool_shared.messaging.topology import declare_topology
from codexpool_shared.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


def acking(handler: Handler, *, retry_delay_s: tuple[float, float] = (0.1, 2.0)) -> SettlingHandler:
    """The common settling policy: ack once ``handler`` returns, requeue when it raises.

    The requeue waits first, longer with every delivery of the message (``first * 2**count``, at
    most ``largest``), so a transient outage (Redis down) neither spins nor burns the queue's
    delivery limit in milliseconds; the delivery limit then bounds a handler that always fails.
    The error is raised on, so the consumer counts the delivery ``failed`` and its span (which
    covers the wait) records it.

    Args:
        handler: Awaited with each event and its ``MessageInfo``.
        retry_delay_s: The wait before a requeue: first and largest, in seconds.

    Returns:
        A handler for ``EventConsumer``.
    """
    first, largest = retry_delay_s

    async def settle(event: Event, delivery: Delivery) -> None:
        info = delivery.info
        try:
            await handler(event, info)
        except Exception:
            await asyncio.sleep(min(largest, first * 2 ** min(info.delivery_count, 30)))
            # A lost channel cannot take the nack, and RabbitMQ redelivers the message anyway.
            with contextlib.suppress(Exception):
                await delivery.nack(requeue=True)
            raise
        await delivery.ack()

    return settle


class EventConsumer:
    """Consumes events from one durable queue and hands each, with its delivery, to ``handler``."""

    def __init__(
        self,
        amqp_url: str,
        queue: str,
        handler: SettlingHandler,
        *,
        registry: CollectorRegistry | None = None,
        name: str = "codexpool-consumer",
        prefetch: int = 200,
        declare: str | None = None,
        on_malformed: Callable[[MalformedMessageError], object] | None = None,
        span_per_delivery: bool = True,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        backoff_s: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        """Build a consumer; nothing connects until ``start()``.

        Args:
            amqp_url: The broker.
            queue: A durable queue (e.g. ``Topology.health_queue``).
            handler: Awaited once per decoded event with its ``Delivery``, which it settles;
                ``acking(...)`` for the common per-event case.
            registry: Where the metrics go; a private one when omitted.
            name: The AMQP connection name shown in RabbitMQ's management UI.
            prefetch: Unsettled deliveries in flight, 100-300 (RabbitMQ's throughput advice).
            declare: A namespace whose topology (``declare_topology``) is declared on every
                connect, so that the queue exists on a fresh or reset broker too.
            on_malformed: Called with the error of every body that does not decode (its
                ``reason`` says whether only unknown fields were wrong), for a service's own
                counters (the consumer's metrics count it anyway).
            span_per_delivery: Run the handler inside a CONSUMER span per delivery; off for a
                handler that starts one span per batch (linking each delivery's producer
                context, from ``Delivery.headers``).
            connect_timeout_s: Bound on each connection attempt.
            backoff_s: The wait between connection attempts: first and largest, in seconds.
        """
        if not 100 <= prefetch <= 300:
            raise ValueError("prefetch must be within 100-300")
        self._url = amqp_url
        self._queue = queue
        self._handler = handler
        self._name = name
        self._prefetch = prefetch
        self._declare = declare
        self._on_malformed = on_malformed
        self._span_per_delivery = span_per_delivery
        self._connect_timeout_s = connect_timeout_s
        self._backoff_s = backoff_s
        self._metrics = ConsumerMetrics(registry or CollectorRegistry(), queue)
        self._state = ConsumerState.NEW
        self._supervisor: asyncio.Task[None] | None = None
        self._consuming: tuple[AbstractChannel, str] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self.stats = ConsumerStats()
        """Counters readable by tests."""

    @property
    def state(self) -> ConsumerState:
        """Where the consumer is in its lifecycle."""
        return self._state

    @property
    def consuming(self) -> bool:
        """Whether RabbitMQ is delivering to this consumer now (false while it reconnects)."""
        return self._consuming is not None

    async def start(self) -> None:
        """Start consuming in the background; returns at once, even with RabbitMQ down.

        Raises:
            ConsumerStateError: Started before.
        """
        if self._state is not ConsumerState.NEW:
            raise ConsumerStateError(f"start() on a {self._state.value} consumer")
        self._state = ConsumerState.RUNNING
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"{self._name} consumer"
        )

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop receiving, let handlers in flight finish (within ``timeout_s``), then close.

        Handlers still running then are cancelled. Deliveries not settled by then return to the
        queue when the connection closes.
        """
        if self._state is not ConsumerState.RUNNING:
            self._state = ConsumerState.STOPPED
            return
        self._state = ConsumerState.STOPPING
        consuming, self._consuming = self._consuming, None
        if consuming is not None:
            channel, tag = consuming
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.basic_cancel(tag), 2.0)
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2.0)
        supervisor, self._supervisor = self._supervisor, None
        # Cancelled until it ends: a cancellation that arrives as an AMQP call completes can be
        # swallowed (asyncio.wait_for before Python 3.12, python/cpython#86296); the supervisor
        # then goes on consuming, and one cancel() left stop() waiting forever.
        while supervisor is not None and not supervisor.done():
            supervisor.cancel()
            await asyncio.wait({supervisor}, timeout=1.0)
        self._state = ConsumerState.STOPPED

    async def __aenter__(self) -> EventConsumer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # Connection ------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        first, largest = self._backoff_s
        delay = first
        while self._state is ConsumerState.RUNNING:
            try:
                connection = await connect(
                    self._url, name=self._name, timeout_s=self._connect_timeout_s
                )
            except Exception as exc:
                raise_if_cancelling()
                log.warning("cannot consume %s yet: %r", self._queue, exc)
            else:
                try:
                    await self._consume_until_closed(connection)
                    log.warning("the RabbitMQ connection closed, reconnecting")
                    delay = first
                except Exception as exc:
                    raise_if_cancelling()
                    log.warning("lost the consumer of %s, reconnecting: %r", self._queue, exc)
                finally:
                    self._consuming = None
                    await close_quietly(connection)
            await asyncio.sleep(delay)
            delay = min(delay * 2, largest)

    async def _consume_until_closed(self, connection: AbstractConnection) -> None:
        if self._declare is not None:
            # Its own channel: a declaration that disagrees with the broker closes it.
            setup = await connection.channel()
            await declare_topology(setup, self._declare)
            await setup.close()
        transport = connection.transport
        assert transport is not None  # connect() returned an open connection
        raw = transport.connection
        channel = await raw.channel(publisher_confirms=False)
        await channel.basic_qos(prefetch_count=self._prefetch)
        ok = await channel.basic_consume(self._queue, self.on_message, no_ack=False)
        self._consuming = (channel, ok.consumer_tag or "")
        closings = {raw.closing, channel.closing}
        try:
            await asyncio.wait(closings, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for closing in closings:
                if closing.done() and not closing.cancelled():
                    closing.exception()  # retrieved, so asyncio does not report it as lost
                else:
                    closing.cancel()

    # Deliveries ------------------------------------------------------------------------------

    def _count(self, result: ConsumeResult) -> None:
        self.stats.results[result] += 1
        self._metrics.consumed[result].inc()

    async def on_message(self, message: DeliveredMessage) -> None:
        """Decode, handle and count one delivery, as the consuming channel hands it over.

        Public for transports other than the supervisor's: ``testing.broker.InMemoryBroker``
        feeds its deliveries (settled through ``api.SettleTarget``) to an unstarted consumer, so
        unit tests exercise this very code.
        """
        # aiormq runs each delivery in a task of its own; stop() waits for them.
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        delivery = Delivery(message)
        properties = message.header.properties
        try:
            event = decode(message.body)
        except MalformedMessageError as exc:
            # The reason only: bodies are never logged.
            log.warning("dead-lettering message %s: %s", properties.message_id, exc)
            self._count("malformed")
            if self._on_malformed is not None:
                self._on_malformed(exc)
            # A lost channel cannot take the reject; the redelivery is rejected instead.
            with contextlib.suppress(Exception):
                await delivery.reject()
            return
        try:
            if self._span_per_delivery:
                with consumer_span(
                    properties.headers,
                    exchange=message.exchange or "",
                    routing_key=message.routing_key or "",
                    message_id=properties.message_id or "",
                    queue=self._queue,
                ):
                    await self._handler(event, delivery)
            else:
                await self._handler(event, delivery)
        except Exception as exc:
            # One line: the span holds the traceback, and a failing batch fails many deliveries.
            log.warning("handling message %s failed: %r", properties.message_id, exc)
            self._count("failed")
            return
        self._count("applied")
