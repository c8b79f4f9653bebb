"""Outcome events from the shared quorum queue into Redis, many per Lua script call.

The shared ``EventConsumer`` runs one handler task per delivery (up to the prefetch), each inside
its CONSUMER span, a child of the router's publish. Each handler hands its event to the
``OutcomeBatcher`` and waits: the batcher applies whatever is waiting, up to ``batch_size`` events
in one script call, and the handler returns (so the message is acked) only once its event is in
Redis. The shared consumer's own batch mode is not used because its batch span has no parent:
the consume span would then leave the router's trace.

Redis unavailable: the batch is retried with a capped backoff for as long as it takes, and its
messages stay unacked. Raising instead would make the consumer nack them, and five nacks (the
queue's delivery limit) would dead-letter good events during a long outage; holding them keeps
the prefetch full, which pauses consumption. If the process stops meanwhile, the broker requeues
the unacked messages, at the cost of one delivery each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from codexpool_health.metrics import HealthMetrics
from codexpool_health.store import BatchResult, HealthStore, Outcome, ProviderScore
from codexpool_shared.events import Event, RequestOutcomeV1
from codexpool_shared.messaging import MessageInfo, encode

log = logging.getLogger("codexpool_health")


class ShuttingDownError(RuntimeError):
    """The batcher closed before the event was applied; the message goes back to the queue."""


@dataclass(frozen=True, slots=True)
class _Waiting:
    outcome: Outcome
    future: asyncio.Future[bool]
    context: otel_context.Context


class OutcomeBatcher:
    """Applies submitted outcome events in batches; ``handle`` is the consumer's handler."""

    def __init__(
        self,
        store: HealthStore,
        metrics: HealthMetrics,
        on_scores: Callable[[Sequence[ProviderScore]], None],
        *,
        batch_size: int = 100,
        linger_s: float = 0.002,
        retry_max_s: float = 5.0,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._on_scores = on_scores
        self._batch_size = batch_size
        self._linger_s = linger_s
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

    async def handle(self, event: Event, _: MessageInfo) -> None:
        if not isinstance(event, RequestOutcomeV1):
            # Only outcomes are bound to the queue; anything else is acked and counted.
            self._metrics.processed["ignored"] += 1
            return
        await self.submit(event)

    async def submit(self, event: RequestOutcomeV1) -> bool:
        """Apply ``event`` with the next batch; True if applied, False if it already had been."""
        if self._closed:
            raise ShuttingDownError("the health service is stopping")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(
            _Waiting(Outcome(event, encode(event)), future, otel_context.get_current())
        )
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            if len(self._waiting) < self._batch_size and self._linger_s:
                await asyncio.sleep(self._linger_s)
            count = min(self._batch_size, len(self._waiting))
            batch = self._in_flight = [self._waiting.popleft() for _ in range(count)]
            result = await self._apply(batch)
            self._in_flight = []
            if result is not None:
                self._settle(batch, result)

    async def _apply(self, batch: list[_Waiting]) -> BatchResult | None:
        links = [
            Link(context)
            for context in (trace.get_current_span(w.context).get_span_context() for w in batch[1:])
            if context.is_valid
        ]
        # The script call nests under the first event's consume span; the others are linked.
        token = otel_context.attach(batch[0].context)
        try:
            with trace.get_tracer("codexpool_health").start_as_current_span(
                "apply outcomes",
                links=links,
                attributes={"messaging.batch.message_count": len(batch)},
            ):
                return await self._apply_until_redis_answers(batch)
        finally:
            otel_context.detach(token)

    async def _apply_until_redis_answers(self, batch: list[_Waiting]) -> BatchResult | None:
        delay = 0.05
        while True:
            try:
                return await self._store.apply([w.outcome for w in batch])
            except (RedisConnectionError, RedisTimeoutError) as exc:
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

    def _settle(self, batch: list[_Waiting], result: BatchResult) -> None:
        now = time.time()
        for waiting, applied in zip(batch, result.applied, strict=True):
            self._metrics.processed["applied" if applied else "duplicate"] += 1
            if applied:
                self._metrics.lag.observe(now - waiting.outcome.event.occurred_at.timestamp())
            if not waiting.future.done():
                waiting.future.set_result(applied)
        self._metrics.batch_size.observe(len(batch))
        self._on_scores(result.scores)
