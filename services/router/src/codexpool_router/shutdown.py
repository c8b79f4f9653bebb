"""Ending the requests still in flight at the drain's deadline (``codexpool_shared.drain``).

A request not answered yet is cancelled and answered 503 ``server_shutting_down``. A stream
being relayed is cut on the upstream side, at the next event boundary if one comes within a
second, so that the relay ends it with a terminal ``response.failed`` and a clean end of the
chunked body, never a half event or a broken chunk. Both record the outcome ``shutdown``. A
non-streamed answer already being sent just finishes. The drain calls ``stop`` once per
request: nothing here runs per chunk.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from codexpool_router.sse import SseTap
from codexpool_shared.errors import ApiError

CODE = "server_shutting_down"
MESSAGE = "The router is shutting down; retry the request."
_CUT_STEP_S = 0.02
_CUT_STEPS = 50


class InFlight:
    """One request of the responses routes, as the drain sees it."""

    __slots__ = ("_response", "_tap", "_task", "answering", "stopping")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task
        self._response: aiohttp.ClientResponse | None = None
        self._tap: SseTap | None = None
        self.answering = False
        """The answer has started: a 503 is too late."""
        self.stopping = False
        """The drain's deadline stopped this request."""

    def relaying(self, response: aiohttp.ClientResponse, tap: SseTap) -> None:
        """The answer is this upstream stream, relayed through ``tap``."""
        self.answering = True
        self._response = response
        self._tap = tap

    def stop(self) -> None:
        self.stopping = True
        if self._response is not None:
            self._cut(0)
        elif not self.answering:
            self._task.cancel()

    def _cut(self, step: int) -> None:
        response, tap = self._response, self._tap
        assert response is not None and tap is not None
        if tap.at_boundary or step >= _CUT_STEPS:
            # The relay's next read fails at once; what it relayed ends between two events.
            response.close()
        else:
            asyncio.get_running_loop().call_later(_CUT_STEP_S, self._cut, step + 1)


def shutting_down() -> ApiError:
    """The answer to a request the deadline stopped before it was answered."""
    return ApiError(503, MESSAGE, code=CODE, type="service_unavailable_error")
