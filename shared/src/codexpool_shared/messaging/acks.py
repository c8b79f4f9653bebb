"""Coalesced acks: one ``basic.ack(multiple=True)`` frame for many deliveries.

An ack frame per delivery is one socket write per event, the largest cost of consuming
thousands of events per second. Deliveries of a channel carry increasing delivery tags, and
``multiple=True`` acks every outstanding delivery up to a tag. So the window tracks deliveries
by tag and, once the oldest of them are settled, acks the last acked one of that prefix
with ``multiple=True``. A delivery that was nacked or rejected individually is already settled
(its frame was written first, on the same channel), so a later multiple ack does not touch it;
a delivery still in its handler stops the prefix, so it is never acked early.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class _Entry:
    message: AbstractIncomingMessage
    acked: bool | None = None
    """None while the handler runs; True to ack; False once nacked or rejected on its own."""


class AckWindow:
    """Acks one consumer's deliveries in as few frames as possible."""

    def __init__(self, *, max_pending: int = 100, delay_s: float = 0.005) -> None:
        """Ack once ``max_pending`` deliveries are ready, or ``delay_s`` after the first one."""
        self._tags: list[int] = []  # a heap: the oldest outstanding delivery first
        self._by_tag: dict[int, _Entry] = {}
        self._channel: object = None
        self._ready = 0
        self._max_pending = max_pending
        self._delay_s = delay_s
        self._timer: asyncio.TimerHandle | None = None
        self._sends: set[asyncio.Task[None]] = set()

    def track(self, message: AbstractIncomingMessage) -> None:
        """Register a delivery on arrival, before its handler runs."""
        try:
            channel = message.channel
        except Exception:
            return  # its channel is already gone: nothing to ack on, RabbitMQ redelivers
        if channel is not self._channel:
            # A new channel (robust reconnect) restarts delivery tags; the old channel's
            # deliveries cannot be acked any more and RabbitMQ redelivers them.
            self._channel = channel
            self._tags.clear()
            self._by_tag.clear()
            self._ready = 0
        tag = message.delivery_tag or 0
        heapq.heappush(self._tags, tag)
        self._by_tag[tag] = _Entry(message)

    def ack(self, message: AbstractIncomingMessage) -> None:
        """Mark a delivery as handled; its ack frame follows within ``delay_s``."""
        self._settle(message, acked=True)

    def settled(self, message: AbstractIncomingMessage) -> None:
        """Mark a delivery as nacked or rejected (its own frame already sent)."""
        self._settle(message, acked=False)

    async def drain(self) -> None:
        """Send every ack that is due and wait for the frames to be written."""
        self._flush()
        if self._sends:
            await asyncio.wait(set(self._sends), timeout=2.0)

    def _settle(self, message: AbstractIncomingMessage, *, acked: bool) -> None:
        entry = self._by_tag.get(message.delivery_tag or 0)
        if entry is None or entry.message is not message:
            return  # from a channel that is gone
        entry.acked = acked
        self._ready += 1
        if self._ready >= self._max_pending:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        last_acked: _Entry | None = None
        while self._tags and self._by_tag[self._tags[0]].acked is not None:
            entry = self._by_tag.pop(heapq.heappop(self._tags))
            self._ready -= 1
            if entry.acked:
                last_acked = entry
        if last_acked is not None:
            send = asyncio.get_running_loop().create_task(self._send(last_acked.message))
            self._sends.add(send)
            send.add_done_callback(self._sends.discard)

    @staticmethod
    async def _send(message: AbstractIncomingMessage) -> None:
        try:
            await message.ack(multiple=True)
        except Exception as exc:
            log.info("could not ack deliveries (RabbitMQ will redeliver them): %r", exc)
