"""The router process's retry budget (Finagle's RetryBudget, Envoy's ``retry_budget``).

Every failover attempt after a request's first is extra upstream load; in a brownout, when
every account fails now and then, unbounded failover multiplies it. A retry is allowed while
the retries of the last ``window_s`` seconds stay under ``percent`` % of the requests of the same
window plus a floor of ``min_per_s`` per second of the window, so a quiet router can still fail
over:

    retries <= requests * percent / 100 + min_per_s * window_s

Counts live in a ring of per-second buckets: a request costs O(1), and a second that slides
out of the window is subtracted as a whole (the window moves in steps of one second).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RetryBudget:
    def __init__(
        self,
        percent: float,
        min_per_s: float,
        window_s: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ratio = percent / 100
        self._floor = min_per_s * window_s
        self._clock = clock
        self._requests = [0] * window_s
        self._retries = [0] * window_s
        self._request_total = 0
        self._retry_total = 0
        self._second = math.floor(clock())

    def _advance(self) -> int:
        """Zero the buckets of the seconds that left the window; the current bucket's index."""
        now = math.floor(self._clock())
        size = len(self._requests)
        for second in range(max(self._second + 1, now - size + 1), now + 1):
            slot = second % size
            self._request_total -= self._requests[slot]
            self._retry_total -= self._retries[slot]
            self._requests[slot] = self._retries[slot] = 0
        self._second = max(self._second, now)
        return self._second % size

    def request(self) -> None:
        """Count a client request that reaches the upstream."""
        self._requests[self._advance()] += 1
        self._request_total += 1

    def try_retry(self) -> bool:
        """Spend a retry if the budget has one; False when it is exhausted."""
        slot = self._advance()
        if self._retry_total + 1 > self._request_total * self._ratio + self._floor:
            return False
        self._retries[slot] += 1
        self._retry_total += 1
        return True
