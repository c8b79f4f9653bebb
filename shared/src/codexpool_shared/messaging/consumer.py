"""The consumer helper: manual acks, bounded prefetch, poison messages straight to the DLQ.

Per delivery: a body that does not decode is rejected without requeue (dead-lettered at once,
never a requeue loop); a handler that raises is nacked with requeue after a short delay that
grows with the delivery count, so a transient outage (Redis down) neither spins nor burns the
delivery limit in milliseconds; otherwise the message is acked after the handler returns, in
coalesced ``multiple=True`` frames (acks.py).

The connection is robust (``connect_robust``): a consumer only receives, so the publish hang of
aio-pika#636 does not apply, and aio-pika restores the channel, QoS and consumer after a
reconnect. Deliveries in flight during a reconnect cannot be acked on the new channel; RabbitMQ
redelivers them, and handlers are idempotent by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue
from prometheus_client import CollectorRegistry

from codexpool_shared.messaging import codec
from codexpool_shared.messaging.acks import AckWindow
from codexpool_shared.messaging.api import (
    BatchHandler,
    ConsumerState,
    ConsumerStateError,
    ConsumerStats,
    Delivery,
    Handler,
    MessageInfo,
    Setup,
)
from codexpool_shared.messaging.connection import CONNECT_TIMEOUT_S, close_quietly, connect
from codexpool_shared.messaging.metrics import ConsumeResult, ConsumerMetrics
from codexpool_shared.messaging.propagation import batch_consumer_span, consumer_span

log = logging.getLogger(__name__)


class EventConsumer:
    """Consumes events from one durable queue and hands them to ``handler`` or ``batch_handler``."""

    def __init__(
        self,
        amqp_url: str,
        queue: str,
        handler: Handler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        registry: CollectorRegistry | None = None,
        name: str = "codexpool-consumer",
        prefetch: int = 200,
        batch_size: int = 100,
        batch_window_s: float = 0.005,
        retry_delay_s: tuple[float, float] = (0.1, 2.0),
        setup: Setup | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        """Build a consumer; nothing connects until ``start()``.

        Args:
            amqp_url: The broker.
            queue: A durable queue that exists once ``setup`` ran (e.g. ``Topology.health_queue``).
            handler: Called once per event; exclusive with ``batch_handler``.
            batch_handler: Called with up to ``batch_size`` events that arrived within
                ``batch_window_s`` of the first, for handlers that write in bulk.
            registry: Where the metrics go; a private one when omitted.
            name: The AMQP connection name shown in RabbitMQ's management UI.
            prefetch: Unacked deliveries in flight, 100-300 (RabbitMQ's throughput advice).
            batch_size: Largest batch; at most ``prefetch``.
            batch_window_s: How long a batch waits for more messages after its first.
            retry_delay_s: Delay before a failed delivery is requeued, first and largest.
            setup: Awaited with the channel before consuming, e.g. to declare the topology.
            connect_timeout_s: Bound on the first connection (later ones are the robust
                connection's business).
        """
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        if not 100 <= prefetch <= 300:
            raise ValueError("prefetch must be within 100-300")
        if not 1 <= batch_size <= prefetch:
            raise ValueError("batch_size must be within 1-prefetch")
        self._url = amqp_url
        self._queue_name = queue
        self._handler = handler
        self._batch_handler = batch_handler
        self._name = name
        self._prefetch = prefetch
        self._batch_size = batch_size
        self._batch_window_s = batch_window_s
        self._retry_delay_s = retry_delay_s
        self._setup = setup
        self._connect_timeout_s = connect_timeout_s
        self._metrics = ConsumerMetrics(registry or CollectorRegistry(), queue)
        self._state = ConsumerState.NEW
        self._tasks: set[asyncio.Task[None]] = set()
        self._batch: list[tuple[AbstractIncomingMessage, Delivery]] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._running: tuple[AbstractConnection, AbstractQueue, str] | None = None
        self._acks = AckWindow(max_pending=max(1, prefetch // 2))
        self.stats = ConsumerStats()
        """Counters readable by tests."""

    @property
    def state(self) -> ConsumerState:
        """Where the consumer is in its lifecycle."""
        return self._state

    async def start(self) -> None:
        """Connect, run ``setup``, set the prefetch and start consuming.

        Raises:
            ConsumerStateError: Started before.
            Exception: The broker cannot be reached or the queue does not exist.
        """
        if self._state is not ConsumerState.NEW:
            raise ConsumerStateError(f"start() on a {self._state.value} consumer")
        connection = await connect(
            self._url, name=self._name, robust=True, timeout_s=self._connect_timeout_s
        )
        try:
            if self._setup is not None:
                # Its own channel: a declaration that disagrees with the broker closes it.
                setup_channel = await connection.channel()
                await self._setup(setup_channel)
                await setup_channel.close()
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await channel.declare_queue(self._queue_name, passive=True)
            tag = await queue.consume(self._on_message, no_ack=False)
        except BaseException:
            await close_quietly(connection)
            raise
        self._running = (connection, queue, tag)
        self._state = ConsumerState.RUNNING

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop consuming, let handlers in flight finish (within ``timeout_s``), then close.

        Deliveries not acked by then return to the queue when the connection closes.
        """
        if self._state is not ConsumerState.RUNNING:
            self._state = ConsumerState.STOPPED
            return
        self._state = ConsumerState.STOPPING
        running, self._running = self._running, None
        assert running is not None  # RUNNING always has a connection: set together in start()
        connection, queue, tag = running
        with contextlib.suppress(Exception):
            await asyncio.wait_for(queue.cancel(tag), 2.0)
        self._flush()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        await self._acks.drain()
        await close_quietly(connection)
        self._state = ConsumerState.STOPPED

    async def __aenter__(self) -> EventConsumer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # Deliveries -------------------------------------------------------------------------------

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _count(self, result: ConsumeResult, n: int = 1) -> None:
        self.stats.results[result] += n
        self._metrics.consumed[result].inc(n)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._acks.track(message)
        self._track()
        try:
            event = codec.decode(message.body)
        except codec.MalformedMessageError as exc:
            # The reason only: bodies are never logged.
            log.warning("dead-lettering message %s: %s", message.message_id, exc)
            await self._settle(message.reject(requeue=False))
            self._acks.settled(message)
            self._count("malformed")
            return
        delivery = Delivery(event, _info(message))
        if self._batch_handler is not None:
            self._batch.append((message, delivery))
            if len(self._batch) >= self._batch_size:
                self._flush()
            elif self._flush_timer is None:
                loop = asyncio.get_running_loop()
                self._flush_timer = loop.call_later(self._batch_window_s, self._flush)
            return
        assert self._handler is not None  # exactly one handler, checked in __init__
        try:
            with consumer_span(
                message.headers,
                exchange=message.exchange or "",
                routing_key=message.routing_key or "",
                message_id=message.message_id or "",
                queue=self._queue_name,
            ):
                await self._handler(event, delivery.info)
        except Exception:  # recorded on the span; requeued after it ends
            await self._requeue([message], delivery.info.delivery_count)
            return
        self._acks.ack(message)
        self._count("applied")

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._batch:
            batch, self._batch = self._batch, []
            task = asyncio.get_running_loop().create_task(self._handle_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle_batch(self, batch: list[tuple[AbstractIncomingMessage, Delivery]]) -> None:
        assert self._batch_handler is not None  # only batch mode builds batches
        messages = [message for message, _ in batch]
        try:
            with batch_consumer_span(messages, queue=self._queue_name):
                await self._batch_handler([delivery for _, delivery in batch])
        except Exception:  # recorded on the spans; requeued after they end
            await self._requeue(messages, max(d.info.delivery_count for _, d in batch))
            return
        for message in messages:
            self._acks.ack(message)
        self._count("applied", len(batch))

    async def _requeue(self, messages: list[AbstractIncomingMessage], delivery_count: int) -> None:
        log.warning(
            "handler failed on %d message(s) from %s; requeueing",
            len(messages),
            self._queue_name,
            exc_info=True,
        )
        first, largest = self._retry_delay_s
        await asyncio.sleep(min(largest, first * 2 ** min(delivery_count, 30)))
        for message in messages:
            await self._settle(message.nack(requeue=True))
            self._acks.settled(message)
        self._count("failed", len(messages))

    @staticmethod
    async def _settle(settling: Awaitable[None]) -> None:
        # After a lost connection the channel is gone and RabbitMQ redelivers on its own.
        try:
            await settling
        except Exception as exc:
            log.info("could not settle a delivery (RabbitMQ will redeliver it): %r", exc)


def _info(message: AbstractIncomingMessage) -> MessageInfo:
    count = (message.headers or {}).get("x-delivery-count", 0)
    return MessageInfo(
        message_id=message.message_id,
        exchange=message.exchange or "",
        routing_key=message.routing_key or "",
        redelivered=bool(message.redelivered),
        delivery_count=count if isinstance(count, int) else 0,
    )
