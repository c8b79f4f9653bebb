"""Typed errors of the pool store; each names what was wrong so an API can answer precisely."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every pool-store error."""


class InvalidField(StoreError):
    """A value was rejected; ``field`` names it (``providers[1]``, ``strategy``, ``auth_json``)."""

    def __init__(self, field: str, message: str) -> None:
        """Reject ``field`` with a human-readable ``message``."""
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(StoreError):
    """A provider, agent or pool does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        """Say that the ``kind`` named ``name`` does not exist."""
        super().__init__(f"{kind} {name!r} does not exist")
        self.kind = kind
        self.name = name


class Conflict(StoreError):
    """The write would clash with existing state (a duplicate name, a stale version)."""

    def __init__(self, field: str, message: str) -> None:
        """Reject the write because of ``field``."""
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
