"""An in-memory ``UiSessionStore`` for unit tests of the UI (the real one is Redis)."""

from __future__ import annotations

import time

from codexpool_shared.store.ui_sessions import UiSession


class InMemoryUiSessions:
    """Sessions in a dict, with their TTL; what the UI's unit tests sign in to."""

    def __init__(self) -> None:
        """No session yet."""
        self.sessions: dict[str, tuple[UiSession, float]] = {}

    async def save(self, sid: str, session: UiSession, *, ttl_s: int) -> None:
        """Store ``session`` under ``sid`` for ``ttl_s`` seconds."""
        self.sessions[sid] = (session, time.monotonic() + ttl_s)

    async def load(self, sid: str) -> UiSession | None:
        """The session ``sid`` names, unless it ended or expired."""
        found = self.sessions.get(sid)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    async def end(self, sid: str) -> None:
        """End the session ``sid`` names."""
        self.sessions.pop(sid, None)

    async def ping(self) -> object:
        """Always reachable."""
        return True
