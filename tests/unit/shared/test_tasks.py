"""A background loop that retries on Exception still stops when cancelled, even when a library
turns the cancellation into another exception (as aiormq does while opening a channel)."""

from __future__ import annotations

import asyncio

from codexpool_shared.tasks import raise_if_cancelling, stop


async def _library_call() -> None:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        raise RuntimeError("channel closed") from None


async def _retrying_loop(ticks: list[int], *, guarded: bool) -> None:
    while not ticks or ticks[-1]:
        ticks.append(1)
        try:
            await _library_call()
        except Exception:
            if guarded:
                raise_if_cancelling()
        await asyncio.sleep(0.01)


async def test_a_swallowed_cancellation_still_stops_a_guarded_loop() -> None:
    ticks: list[int] = []
    task = asyncio.create_task(_retrying_loop(ticks, guarded=True))
    await asyncio.sleep(0.05)
    await stop(task, timeout_s=2)
    assert task.cancelled()


async def test_stop_gives_up_on_a_loop_that_ignores_it() -> None:
    ticks: list[int] = []
    task = asyncio.create_task(_retrying_loop(ticks, guarded=False))
    await asyncio.sleep(0.05)
    await stop(task, timeout_s=0.2)  # returns: a shutdown never hangs on it
    assert not task.done() and len(ticks) >= 2
    ticks.append(0)  # the unguarded loop swallows every cancel: end it by its condition
    task.cancel()
    await asyncio.wait_for(task, 2)
