"""The event publisher: ``publish()`` never waits for RabbitMQ (docs/SPEC.md section 5, step 6).

``publish()`` serialises the event, captures the caller's trace context and appends both to a
bounded in-memory buffer; a background task sends the buffer in concurrent batches with
publisher confirms. Guarantee: at-least-once while the buffer holds (consumers deduplicate on
``event_id``); an event is otherwise dropped and counted, never silently lost.

Why a plain connection and our own reconnect loop rather than ``connect_robust``: on a robust
connection that lost its broker, ``exchange.publish()`` waits for the reconnection, possibly
forever (mosquito/aio-pika#636, #556; ag2ai/faststream#1579), and its reconnect interval is
fixed. Here every broker wait is bounded, a failed batch throws the connection away, and the
next connection comes after a capped, jittered backoff. Nothing needs restoring: the publisher
only owns an exchange declaration, which it repeats on every connect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque

from aio_pika.exceptions import PublishError
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan
from prometheus_client import CollectorRegistry

from codexpool_shared.events import BaseEvent, EncodedEvent, event_type
from codexpool_shared.messaging import codec
from codexpool_shared.messaging.api import PublisherState, PublisherStateError, PublisherStats
from codexpool_shared.messaging.connection import close_quietly
from codexpool_shared.messaging.link import Link, Outgoing, open_link, send_event
from codexpool_shared.messaging.metrics import DropReason, PublisherMetrics
from codexpool_shared.messaging.topology import Topology
from codexpool_shared.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # Only a bug gets here; events then pile up in the buffer and are dropped when full.
        log.error("the event sender crashed", exc_info=task.exception())


def _parent_only() -> Context:
    """The caller's span as a context of its own: all the PRODUCER span needs.

    Keeping the caller's whole context would keep its span (attributes, events) alive while the
    event waits, which in a broker outage is the whole buffer's worth of requests.
    """
    return trace.set_span_in_context(NonRecordingSpan(trace.get_current_span().get_span_context()))


class EventPublisher:
    """Publishes events to ``<namespace>.events`` from a bounded buffer (see module docstring).

    When the buffer is full the *newest* event (the one being published) is dropped: what is
    already buffered may be in flight and cannot be taken back, and dropping at the door keeps
    ``publish()`` O(1). ``publish()`` during ``close()`` drops with reason ``shutdown``.
    """

    def __init__(
        self,
        amqp_url: str,
        namespace: str,
        *,
        registry: CollectorRegistry | None = None,
        name: str = "codexpool-publisher",
        buffer_size: int = 10_000,
        batch_size: int = 500,
        publish_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        declare: bool = True,
    ) -> None:
        """Build a publisher; nothing connects until ``start()``.

        Args:
            amqp_url: The broker.
            namespace: Names the exchange (``<namespace>.events``) and the declared topology.
            registry: Where the metrics go; a private one when omitted (never the global one).
            name: The AMQP connection name shown in RabbitMQ's management UI.
            buffer_size: Events held (buffered plus in flight) before ``publish()`` drops.
            batch_size: Events sent concurrently, their confirms awaited together.
            publish_timeout_s: Bound on one batch's confirms; past it the connection is replaced.
            connect_timeout_s: Bound on connecting, opening the channel and declaring.
            backoff_s: First and largest delay between reconnects (jittered, doubling).
            declare: Declare the whole topology on connect (``declare_topology``), so outcome
                events are routable before the health service first starts.
        """
        if buffer_size < 1 or batch_size < 1:
            raise ValueError("buffer_size and batch_size must be at least 1")
        self._url = amqp_url
        self._topology = Topology(namespace)
        self._name = name
        self._buffer_size = buffer_size
        self._batch_size = batch_size
        self._publish_timeout_s = publish_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._backoff_s = backoff_s
        self._declare = declare
        self._state = PublisherState.NEW
        self._pending: deque[Outgoing] = deque()
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._routing_keys: dict[type[BaseEvent], str] = {}
        self.stats = PublisherStats()
        """Counters readable by tests."""
        self._metrics = PublisherMetrics(registry or CollectorRegistry(), lambda: self.buffered)

    @property
    def state(self) -> PublisherState:
        """Where the publisher is in its lifecycle."""
        return self._state

    @property
    def buffered(self) -> int:
        """Events accepted and not yet confirmed or dropped (the ``buffer_depth`` gauge)."""
        return len(self._pending) + self._in_flight

    async def start(self) -> None:
        """Start the background sender. Returns at once: the broker may well be down."""
        if self._state is not PublisherState.NEW:
            raise PublisherStateError(f"start() on a {self._state.value} publisher")
        self._state = PublisherState.RUNNING
        self._task = asyncio.create_task(self._run(), name=f"{self._name}-sender")
        self._task.add_done_callback(_report_crash)

    def publish(self, event: BaseEvent | EncodedEvent) -> None:
        """Buffer ``event`` for sending; returns at once and never raises for broker trouble.

        The caller's current trace context is captured here, so the event's PRODUCER span is a
        child of the request that made it even though the background task sends it.

        Raises:
            PublisherStateError: Before ``start()`` or after ``close()``.
        """
        if self._state is not PublisherState.RUNNING:
            if self._state is PublisherState.CLOSING:
                # A request finishing during shutdown: never fail it for the event's sake.
                self._drop("shutdown", 1)
                return
            if self._state is PublisherState.NEW:
                raise PublisherStateError("start() the publisher first")
            raise PublisherStateError("the publisher is closed: publish() after close() is a bug")
        if self.buffered >= self._buffer_size:
            self._drop("buffer_full", 1)
            return
        if isinstance(event, EncodedEvent):
            message_id, model, body = event.event_id, event.model, event.body
        else:
            message_id, model, body = str(event.event_id), type(event), codec.encode(event)
        self._pending.append(
            Outgoing(message_id, self._routing_key(model), body, _parent_only(), time.time_ns())
        )
        self._wake.set()

    async def close(self, deadline_s: float = 5.0) -> None:
        """Flush the buffer within ``deadline_s``; whatever is still unconfirmed then is dropped.

        Returns within ``deadline_s`` plus a fraction of a second whatever the broker does.
        Idempotent. Events left over are counted as ``dropped{reason="shutdown"}``.
        """
        if self._state in (PublisherState.CLOSING, PublisherState.CLOSED):
            return
        task, self._task = self._task, None
        self._state = PublisherState.CLOSING
        self._wake.set()
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=deadline_s)
            if not done:
                task.cancel()
                # The task only closes its connection (bounded) once cancelled.
                await asyncio.wait({task}, timeout=1.0)
        self._drop("shutdown", self.buffered)
        self._pending.clear()
        self._in_flight = 0
        self._state = PublisherState.CLOSED

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # Background sender ------------------------------------------------------------------------

    def _routing_key(self, model: type[BaseEvent]) -> str:
        key = self._routing_keys.get(model)
        if key is None:
            key = self._routing_keys[model] = event_type(model)
        return key

    def _drop(self, reason: DropReason, count: int) -> None:
        if count:
            self.stats.dropped[reason] += count
            self._metrics.dropped[reason].inc(count)

    async def _run(self) -> None:
        link: Link | None = None
        failures_in_a_row = 0
        try:
            while self._pending or self._state is PublisherState.RUNNING:
                if not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if link is not None and link.channel.is_closed:  # the broker closed it
                    await close_quietly(link.connection, timeout_s=0.5)
                    link = None
                if link is None:
                    try:
                        link = await open_link(
                            self._url,
                            name=self._name,
                            topology=self._topology,
                            declare=self._declare,
                            timeout_s=self._connect_timeout_s,
                        )
                    except Exception as exc:
                        raise_if_cancelling()
                        log.warning("cannot reach RabbitMQ for publishing: %r", exc)
                        failures_in_a_row += 1
                        await self._backoff(failures_in_a_row)
                        continue
                if await self._send_batch(link):
                    failures_in_a_row = 0
                else:
                    await close_quietly(link.connection, timeout_s=0.5)
                    link = None
                    failures_in_a_row += 1
                    await self._backoff(failures_in_a_row)
        finally:
            if link is not None:
                await close_quietly(link.connection, timeout_s=0.5)

    async def _backoff(self, failures_in_a_row: int) -> None:
        first, largest = self._backoff_s
        ceiling = min(largest, first * 2 ** min(failures_in_a_row - 1, 30))
        # "Equal jitter": never a hot loop, and replicas do not reconnect in lockstep.
        await asyncio.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))

    async def _send_batch(self, link: Link) -> bool:
        """Send one batch concurrently; False when the connection should be replaced."""
        batch = [self._pending.popleft() for _ in range(min(self._batch_size, len(self._pending)))]
        self._in_flight = len(batch)
        sends = [asyncio.create_task(send_event(link, item)) for item in batch]
        retry: list[Outgoing] = []
        try:
            await asyncio.wait(sends, timeout=self._publish_timeout_s)
        finally:
            # Also on cancellation (close() past its deadline): what was confirmed counts as
            # published and the rest goes back to the buffer, where close() counts it.
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            unroutable = 0
            for item, send in zip(batch, sends, strict=True):
                error = asyncio.CancelledError() if send.cancelled() else send.exception()
                if isinstance(error, PublishError):
                    unroutable += 1
                elif error is not None:
                    retry.append(item)
            self._account(len(batch) - len(retry) - unroutable, unroutable, retry)
        return not retry

    def _account(self, published: int, unroutable: int, retry: list[Outgoing]) -> None:
        self.stats.published += published
        self._metrics.published.inc(published)
        self._drop("unroutable", unroutable)
        if retry:
            self.stats.failures += len(retry)
            self._metrics.failures.inc(len(retry))
            # Back at the front, in their original order: retried before anything newer.
            self._pending.extendleft(reversed(retry))
        self._in_flight = 0
