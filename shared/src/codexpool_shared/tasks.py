"""Background loops that stop when they are told to, whatever their libraries do."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into another exception.

    A loop that catches ``Exception`` to keep going (and retry on the next tick) would otherwise
    swallow its own shutdown: aiormq, cancelled while opening a channel, closes the channel and
    raises a channel error instead of ``CancelledError``, so the loop went on for ever and the
    health service's shutdown waited on it. ``Task.cancelling()`` still counts the request.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop(task: asyncio.Task[Any], timeout_s: float = 5.0) -> None:
    """Cancel ``task`` and wait for it, at most ``timeout_s``: a shutdown never hangs on it."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.error("background task %s did not stop within %.1f s", task.get_name(), timeout_s)
