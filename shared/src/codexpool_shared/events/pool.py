"""``pool.changed.v1``: an agent's pool changed, published by the admin API."""

from __future__ import annotations

from typing import Literal

from codexpool_shared.events.base import BaseEvent
from codexpool_shared.events.outcome import Strategy

PoolChange = Literal["created", "updated", "deleted", "member_added", "member_removed"]
"""What kind of change was made."""


class PoolChangedV1(BaseEvent):
    """An agent's pool after a change."""

    type: Literal["pool.changed.v1"] = "pool.changed.v1"
    """Event tag."""

    agent_id: str
    """Agent whose pool changed."""

    change: PoolChange
    """What kind of change was made."""

    version: int
    """Pool version after the change."""

    strategy: Strategy | None
    """Strategy after the change; ``None`` when the pool was deleted."""

    providers: tuple[str, ...]
    """Members after the change, in order (the first is the primary)."""

    actor: str
    """Who made the change: an admin token's id or name, never the token."""
