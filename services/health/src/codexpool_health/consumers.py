"""The health queue's consumer: decode, dead-letter poison, and hand events to the batcher.

Built here rather than on ``codexpool_shared.messaging.EventConsumer`` for two reasons: that
helper acks each delivery with its own frame (one socket write per event, the largest cost
at thousands of events per second; the batcher acks a batch in one), and its batch mode gives
the batch span no parent, which would take the consume span out of the router's trace. The
pieces are the shared ones: ``connect``/``close_quietly``, ``declare_topology``, the codec
(what is malformed) and ``consumer_span`` (trace context from the message headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue

from codexpool_health.batcher import OutcomeBatcher
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
        self._queue_name = Topology(namespace).health_queue
        self._batcher = batcher
        self._metrics = metrics
        self._prefetch = prefetch
        self._name = name
        self._running: tuple[AbstractConnection, AbstractQueue, str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect (robust: aio-pika restores the consumer after a reconnect) and consume."""
        if self._running is not None:
            raise RuntimeError("the consumer is already running")
        connection = await connect(self._url, name=self._name, robust=True)
        try:
            setup = await connection.channel()
            await declare_topology(setup, self._namespace)
            await setup.close()
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await channel.declare_queue(self._queue_name, passive=True)
            tag = await queue.consume(self._on_message, no_ack=False)
        except BaseException:
            await close_quietly(connection)
            raise
        self._running = (connection, queue, tag)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop receiving, let the batches in flight land (within ``timeout_s``), then close.

        Deliveries not acked by then go back to the queue when the connection closes.
        """
        running, self._running = self._running, None
        if running is None:
            return
        connection, queue, tag = running
        with contextlib.suppress(Exception):
            await asyncio.wait_for(queue.cancel(tag), 2.0)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        await close_quietly(connection)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            event = decode(message.body)
        except MalformedMessageError as exc:
            # The reason only: bodies are never logged. Rejected without requeue: to the DLQ.
            log.warning("dead-lettering message %s: %s", message.message_id, exc)
            self._metrics.processed["malformed"].inc()
            with contextlib.suppress(Exception):
                await message.reject(requeue=False)
            return
        if not isinstance(event, RequestOutcomeV1):
            # Only outcomes are bound to this queue; anything else is acked and counted.
            self._metrics.processed["ignored"].inc()
            with contextlib.suppress(Exception):
                await message.ack()
            return
        with consumer_span(
            message.headers,
            exchange=message.exchange or "",
            routing_key=message.routing_key or "",
            message_id=message.message_id or "",
            queue=self._queue_name,
        ):
            # The batcher acks (or nacks) the message; a failure here leaves it for redelivery.
            with contextlib.suppress(Exception):
                await self._batcher.submit(event, message)
