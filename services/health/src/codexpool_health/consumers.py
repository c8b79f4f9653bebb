"""The health queue's consumer: decode, dead-letter poison, and hand events to the batcher.

Built here rather than on ``codexpool_shared.messaging.EventConsumer``, and on aiormq's channel
rather than aio-pika's ``Queue.consume``, for throughput: that helper acks each delivery with a
frame of its own (the batcher acks a whole batch with one), its batch mode gives the batch span
no parent (the consume span would leave the router's trace), and aio-pika wraps every delivery in
a second task and a message object, a fifth of the cost per event at thousands per second. The
pieces are still the shared ones: ``connect``/``close_quietly``, ``declare_topology``, the codec
(what is malformed) and ``consumer_span`` (the trace context in the message headers).

Reconnecting is this module's job (aio-pika's robust connection only restores consumers made
through aio-pika): a supervisor task connects, consumes until the connection closes, and
connects again after a capped backoff. Deliveries of a lost connection cannot be acked any more;
RabbitMQ redelivers them and the dedupe absorbs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel, DeliveredMessage

from codexpool_health.batcher import Delivery, OutcomeBatcher
from codexpool_health.metrics import HealthMetrics
from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.messaging import (
    MalformedMessageError,
    Topology,
    close_quietly,
    connect,
    declare_topology,
    decode,
)
from codexpool_shared.messaging.propagation import consumer_span

log = logging.getLogger("codexpool_health")


class OutcomeConsumer:
    """Consumes ``request.outcome.v1`` from the namespace's health queue into the batcher."""

    def __init__(
        self,
        amqp_url: str,
        namespace: str,
        batcher: OutcomeBatcher,
        metrics: HealthMetrics,
        *,
        prefetch: int = 200,
        name: str = "codexpool-health",
    ) -> None:
        self._url = amqp_url
        self._namespace = namespace
        self._queue = Topology(namespace).health_queue
        self._batcher = batcher
        self._metrics = metrics
        self._prefetch = prefetch
        self._name = name
        self._supervisor: asyncio.Task[None] | None = None
        self._consuming: tuple[AbstractChannel, str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start consuming in the background; returns at once, RabbitMQ may well be down."""
        if self._supervisor is not None:
            raise RuntimeError("the consumer is already running")
        self._supervisor = asyncio.create_task(self._supervise(), name="health-consumer")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop receiving, let the batches in flight land (within ``timeout_s``), then close.

        Deliveries not acked by then go back to the queue when the connection closes.
        """
        consuming, self._consuming = self._consuming, None
        if consuming is not None:
            channel, tag = consuming
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.basic_cancel(tag), 2.0)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor

    async def _supervise(self) -> None:
        delay = 0.5
        while True:
            try:
                connection = await connect(self._url, name=self._name)
            except Exception as exc:
                log.warning("cannot consume from RabbitMQ yet: %r", exc)
            else:
                try:
                    await self._consume_until_closed(connection)
                    log.warning("the RabbitMQ connection closed, reconnecting")
                    delay = 0.5
                except Exception as exc:
                    log.warning("lost the RabbitMQ consumer, reconnecting: %r", exc)
                finally:
                    self._consuming = None
                    await close_quietly(connection)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _consume_until_closed(self, connection: AbstractConnection) -> None:
        setup = await connection.channel()
        await declare_topology(setup, self._namespace)
        await setup.close()
        transport = connection.transport
        assert transport is not None  # connect() returned an open connection
        raw = transport.connection
        channel = await raw.channel(publisher_confirms=False)
        await channel.basic_qos(prefetch_count=self._prefetch)
        ok = await channel.basic_consume(self._queue, self._on_message, no_ack=False)
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

    async def _on_message(self, message: DeliveredMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        properties = message.header.properties
        delivery = Delivery(message.body, message.channel, message.delivery_tag or 0)
        try:
            event = decode(message.body)
        except MalformedMessageError as exc:
            # The reason only: bodies are never logged. Rejected without requeue: to the DLQ.
            log.warning("dead-lettering message %s: %s", properties.message_id, exc)
            self._metrics.processed["malformed"].inc()
            with contextlib.suppress(Exception):
                await delivery.reject()
            return
        if not isinstance(event, RequestOutcomeV1):
            # Only outcomes are bound to this queue; anything else is acked and counted.
            self._metrics.processed["ignored"].inc()
            with contextlib.suppress(Exception):
                await delivery.ack()
            return
        with consumer_span(
            properties.headers,
            exchange=message.exchange or "",
            routing_key=message.routing_key or "",
            message_id=properties.message_id or "",
            queue=self._queue,
        ):
            # The batcher acks (or nacks) the delivery; a failure here leaves it for redelivery.
            with contextlib.suppress(Exception):
                await self._batcher.submit(event, delivery)
