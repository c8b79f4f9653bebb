"""The sim's notion of now: token expiry, quota windows and device codes all read it."""

from __future__ import annotations

import time


class Clock:
    """Wall-clock time plus an offset that tests move, or a frozen instant."""

    def __init__(self, start: float | None = None, *, frozen: bool = False) -> None:
        self._offset = 0.0 if start is None else start - time.time()
        self._frozen_at: float | None = None
        if frozen:
            self._frozen_at = time.time() if start is None else start

    def now(self) -> float:
        if self._frozen_at is not None:
            return self._frozen_at
        return time.time() + self._offset

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def advance(self, seconds: float) -> None:
        if self._frozen_at is not None:
            self._frozen_at += seconds
        else:
            self._offset += seconds

    def set(self, now: float) -> None:
        if self._frozen_at is not None:
            self._frozen_at = now
        else:
            self._offset = now - time.time()

    def freeze(self) -> None:
        self._frozen_at = self.now()

    def unfreeze(self) -> None:
        if self._frozen_at is not None:
            self._offset = self._frozen_at - time.time()
            self._frozen_at = None
