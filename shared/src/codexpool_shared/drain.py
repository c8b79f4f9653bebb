"""Draining a service process on SIGTERM, so that a rolling deploy never cuts a request.

``running`` -> ``draining`` (:meth:`Drain.begin`, on the first SIGTERM or SIGINT) -> ``expired``
(``drain_timeout_s`` later, or :meth:`Drain.expire` on a second signal). From ``begin`` on,
``/readyz`` answers 503 and the server stops accepting; requests in flight finish by themselves.
At the deadline, everything still tracked is asked to :meth:`Stoppable.stop`: the router ends
its streams with a terminal ``response.failed`` event and a clean end of the body. uvicorn
cancels whatever is left only :data:`codexpool_shared.cli.GRACE_S` later, after the app's own
endings, and the lifespan then flushes the event buffer.

Nothing here costs a request more than one set insertion and removal: the deadline reaches the
requests from the drain's side.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Stoppable(Protocol):
    """Something in flight that the drain's deadline must end."""

    def stop(self) -> None:
        """End it now, cleanly; called once, on the event loop, and must not raise."""


class Drain:
    """One process's drain: its state, its deadline and what is still in flight."""

    def __init__(self, timeout_s: float) -> None:
        """A drain that, once begun, expires after ``timeout_s`` seconds."""
        self.timeout_s = timeout_s
        self._draining = False
        self._expired = False
        self._timer: asyncio.TimerHandle | None = None
        self._tracked: set[Stoppable] = set()

    @property
    def draining(self) -> bool:
        """True from :meth:`begin` on: the process must not be sent new work."""
        return self._draining

    @property
    def expired(self) -> bool:
        """True once the deadline has passed: nothing new may start."""
        return self._expired

    def begin(self) -> None:
        """Start draining and arm the deadline; later calls do nothing.

        Must run on the event loop (a signal handler schedules it there).
        """
        if self._draining:
            return
        self._draining = True
        self._timer = asyncio.get_running_loop().call_later(self.timeout_s, self.expire)

    def expire(self) -> None:
        """Reach the deadline now: stop everything tracked; later calls do nothing."""
        if self._expired:
            return
        self._draining = self._expired = True
        if self._timer is not None:
            self._timer.cancel()
        tracked, self._tracked = self._tracked, set()
        for item in tracked:
            item.stop()

    def track(self, item: Stoppable) -> None:
        """Have ``item`` stopped at the deadline (at once when it has passed)."""
        if self._expired:
            item.stop()
        else:
            self._tracked.add(item)

    def untrack(self, item: Stoppable) -> None:
        """``item`` ended by itself; the deadline no longer concerns it."""
        self._tracked.discard(item)
