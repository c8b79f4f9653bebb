from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from codexpool_shared.messaging.acks import AckWindow


@dataclass(eq=False)
class Delivery:
    delivery_tag: int
    channel: object
    acks: list[bool] = field(default_factory=list)

    async def ack(self, multiple: bool = False) -> None:
        self.acks.append(multiple)


def _deliveries(n: int, channel: object | None = None) -> list[Delivery]:
    channel = channel or object()
    return [Delivery(tag, channel) for tag in range(1, n + 1)]


async def test_a_running_handler_holds_back_later_acks() -> None:
    window = AckWindow(delay_s=0.001)
    first, second, third = _deliveries(3)
    for d in (first, second, third):
        window.track(d)  # type: ignore[arg-type]
    window.ack(second)  # type: ignore[arg-type]
    window.ack(third)  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    assert [first.acks, second.acks, third.acks] == [[], [], []]

    window.ack(first)  # type: ignore[arg-type]
    await window.drain()
    assert [first.acks, second.acks, third.acks] == [[], [], [True]]  # one frame for all three


async def test_individually_settled_deliveries_are_skipped() -> None:
    window = AckWindow(delay_s=0.001)
    first, nacked, last_nacked = _deliveries(3)
    for d in (first, nacked, last_nacked):
        window.track(d)  # type: ignore[arg-type]
    window.ack(first)  # type: ignore[arg-type]
    window.settled(nacked)  # type: ignore[arg-type]
    window.settled(last_nacked)  # type: ignore[arg-type]
    await window.drain()
    # The multiple ack stops at the last acked delivery: never at a nacked one.
    assert [first.acks, nacked.acks, last_nacked.acks] == [[True], [], []]


async def test_full_window_flushes_at_once() -> None:
    window = AckWindow(max_pending=2, delay_s=60)
    deliveries = _deliveries(2)
    for d in deliveries:
        window.track(d)  # type: ignore[arg-type]
        window.ack(d)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert deliveries[1].acks == [True]


async def test_a_new_channel_forgets_the_old_one() -> None:
    window = AckWindow(delay_s=0.001)
    [stale] = _deliveries(1)
    window.track(stale)  # type: ignore[arg-type]
    [fresh] = _deliveries(1)  # tag 1 again, on a new channel
    window.track(fresh)  # type: ignore[arg-type]
    window.ack(stale)  # type: ignore[arg-type]
    window.ack(fresh)  # type: ignore[arg-type]
    await window.drain()
    assert (stale.acks, fresh.acks) == ([], [True])
