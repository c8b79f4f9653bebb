"""What the drain's deadline does to one request of the responses routes."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiohttp

from codexpool_router.shutdown import InFlight
from codexpool_router.sse import SseTap

DELTA = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"}\n\n'


class Upstream:
    closed = False

    def close(self) -> None:
        self.closed = True


def relaying(tap: SseTap) -> tuple[InFlight, Upstream]:
    upstream = Upstream()
    task = cast(asyncio.Task[Any], None)
    inflight = InFlight(task)
    inflight.relaying(cast(aiohttp.ClientResponse, upstream), tap)
    return inflight, upstream


async def test_a_stream_between_two_events_is_cut_at_once() -> None:
    tap = SseTap()
    tap.relay(DELTA)
    inflight, upstream = relaying(tap)
    inflight.stop()
    assert inflight.stopping and upstream.closed


async def test_a_stream_inside_an_event_is_cut_once_the_event_is_relayed() -> None:
    tap = SseTap()
    tap.relay(DELTA[:30])
    inflight, upstream = relaying(tap)
    inflight.stop()
    await asyncio.sleep(0.1)
    assert not upstream.closed
    tap.relay(DELTA[30:])
    await asyncio.sleep(0.1)
    assert upstream.closed


async def test_an_event_that_never_ends_is_cut_after_a_second() -> None:
    tap = SseTap()
    tap.relay(DELTA[:30])
    inflight, upstream = relaying(tap)
    inflight.stop()
    await asyncio.sleep(0.5)
    assert not upstream.closed
    await asyncio.sleep(1.5)
    assert upstream.closed


async def test_an_unanswered_request_is_cancelled_and_an_answer_under_way_is_not() -> None:
    waiting = asyncio.create_task(asyncio.sleep(10))
    unanswered = InFlight(waiting)
    unanswered.stop()
    await asyncio.sleep(0)
    assert waiting.cancelled()

    sending = asyncio.create_task(asyncio.sleep(0.05))
    answering = InFlight(sending)
    answering.answering = True
    answering.stop()
    await sending
    assert answering.stopping and not sending.cancelled()
