"""Applies outcome events many per Lua script call, then acks their messages in one frame.

The shared ``EventConsumer`` runs one task per delivery (up to the prefetch); each hands its
event and ``Delivery`` to the batcher and waits. The batcher applies whatever is waiting, up to
``batch_size`` events per script call, in arrival order, one batch at a time, inside one
CONSUMER span per batch: the child of the first delivery's producer span, linked to every other
delivery's (``batch_consumer_span``), instead of a span per delivery. Once a batch is in Redis
it acks the batch's newest delivery with ``multiple=True``: every older delivery on that channel
is then settled (applied in this or an earlier batch, or already rejected), and one frame
replaces a hundred.

Redis unavailable: the batch is retried with a capped backoff for as long as it takes and its
messages stay unacked. Nacking instead would count against the queue's delivery limit, and five
nacks would dead-letter good events during a long outage; holding them keeps the prefetch
full, which pauses consumption. If the process stops meanwhile, the broker requeues them.
Any other failure (a script error) nacks the batch at once, before any later batch can ack past
it, and pauses; the delivery limit then bounds the retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry import trace

from codexpool_health.metrics import HealthMetrics
from codexpool_health.store import BatchResult, HealthStore, Outcome, ProviderScore
from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.messaging import Delivery, encode
from codexpool_shared.messaging.propagation import batch_consumer_span
from codexpool_shared.redis import UNAVAILABLE

log = logging.getLogger("codexpool_health")


class ShuttingDownError(RuntimeError):
    """The batcher closed before the event was applied; the message goes back to the queue."""


@dataclass(frozen=True, slots=True)
class _Waiting:
    outcome: Outcome
    message: Delivery | None
    future: asyncio.Future[bool]


class OutcomeBatcher:
    """Applies the outcome events the consumer submits, in batches, and settles their deliveries."""

    def __init__(
        self,
        store: HealthStore,
        metrics: HealthMetrics,
        on_scores: Callable[[Sequence[ProviderScore]], None],
        *,
        queue: str = "",
        batch_size: int = 100,
        linger_s: float = 0.002,
        max_linger_s: float = 0.05,
        retry_max_s: float = 5.0,
    ) -> None:
        """``queue``: where the deliveries come from, named by each batch's CONSUMER span."""
        self._store = store
        self._metrics = metrics
        self._on_scores = on_scores
        self._queue = queue
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._max_linger_s = max_linger_s
        self._retry_max_s = retry_max_s
        self._waiting: deque[_Waiting] = deque()
        self._in_flight: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="health-batcher")

    async def close(self) -> None:
        """Stop applying; events still waiting fail, so their messages are redelivered."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiting in [*self._in_flight, *self._waiting]:
            if not waiting.future.done():
                waiting.future.set_exception(ShuttingDownError("the health service is stopping"))
        self._waiting.clear()

    async def submit(self, event: RequestOutcomeV1, message: Delivery | None = None) -> bool:
        """Apply ``event`` with the next batch, then ack ``message`` (whose body it came in).

        Returns:
            True if applied, False if it had been already (a redelivery).
        """
        if self._closed:
            raise ShuttingDownError("the health service is stopping")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(
            _Waiting(
                Outcome(event, message.body if message is not None else encode(event)),
                message,
                future,
            )
        )
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            await self._linger()
            count = min(self._batch_size, len(self._waiting))
            batch = self._in_flight = [self._waiting.popleft() for _ in range(count)]
            result = await self._apply(batch)
            if result is None:
                await self._nack(batch)
            else:
                await self._ack(batch)
                self._settle(batch, result)
            self._in_flight = []

    async def _linger(self) -> None:
        """Wait ``linger_s`` for more events, and again while the rate they arrive at would fill
        the batch within ``max_linger_s`` in all.

        Each script call has a fixed cost in Redis (its round trip, the rescoring), so a backlog
        is best applied in full batches; at a rate that would not fill one in time, or once a
        linger brought nothing new (a burst is over), the wait ends and the lag stays as it was.
        """
        first = last = len(self._waiting)
        waited = 0.0
        while self._linger_s and (count := len(self._waiting)) < self._batch_size:
            if waited:
                # Nothing new in the last linger: a burst (or a trickle) is over.
                if count == last:
                    return
                arrived = count - first
                if waited * (1 + (self._batch_size - count) / arrived) > self._max_linger_s:
                    return
            last = count
            await asyncio.sleep(self._linger_s)
            waited += self._linger_s

    async def _apply(self, batch: list[_Waiting]) -> BatchResult | None:
        deliveries = [w.message for w in batch if w.message is not None]
        info = deliveries[0].info if deliveries else None
        with (
            batch_consumer_span(
                [d.headers for d in deliveries],
                exchange=info.exchange if info else "",
                routing_key=info.routing_key if info else "",
                queue=self._queue,
            ),
            trace.get_tracer("codexpool_health").start_as_current_span(
                "apply outcomes", attributes={"messaging.batch.message_count": len(batch)}
            ),
        ):
            return await self._apply_until_redis_answers(batch)

    async def _apply_until_redis_answers(self, batch: list[_Waiting]) -> BatchResult | None:
        delay = 0.05
        while True:
            try:
                return await self._store.apply([w.outcome for w in batch])
            except UNAVAILABLE as exc:
                self._metrics.redis_errors.inc()
                log.warning("Redis unavailable, holding %d events: %r", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
            except Exception as exc:
                # Not an outage (a script error, say): the consumer requeues these messages,
                # and the delivery limit bounds how often.
                log.exception("applying %d events failed", len(batch))
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                return None

    async def _ack(self, batch: list[_Waiting]) -> None:
        newest: dict[int, Delivery] = {}
        for waiting in batch:
            if waiting.message is not None:
                newest[id(waiting.message.channel)] = waiting.message
        for message in newest.values():
            try:
                await message.ack(multiple=True)
            except Exception as exc:
                # The channel is gone (a reconnect): RabbitMQ redelivers, and dedupe absorbs it.
                log.info("could not ack a batch (it will be redelivered): %r", exc)

    async def _nack(self, batch: list[_Waiting]) -> None:
        for waiting in batch:
            if waiting.message is not None:
                with contextlib.suppress(Exception):
                    await waiting.message.nack()
        await asyncio.sleep(self._retry_max_s / 10)

    def _settle(self, batch: list[_Waiting], result: BatchResult) -> None:
        now = time.time()
        lag = self._metrics.lag
        for waiting, applied in zip(batch, result.applied, strict=True):
            if applied:
                lag.observe(now - waiting.outcome.event.occurred_at.timestamp())
            if not waiting.future.done():
                waiting.future.set_result(applied)
        applied_count = sum(result.applied)
        self._metrics.processed["applied"].inc(applied_count)
        if applied_count < len(batch):
            self._metrics.processed["duplicate"].inc(len(batch) - applied_count)
        self._metrics.batch_size.observe(len(batch))
        try:
            self._on_scores(result.scores)
        except Exception:
            # Reporting must never stop the batcher: the scores are in Redis already.
            log.exception("reporting new scores failed")
