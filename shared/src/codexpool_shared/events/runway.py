"""``pool.runway_low.v1``: a pool runs dry before its earliest reset (health, once per episode)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from codexpool_shared.events.base import BaseEvent


class PoolRunwayLowV1(BaseEvent):
    """At today's burn rate, every member of the pool is exhausted before any of them resets."""

    type: Literal["pool.runway_low.v1"] = "pool.runway_low.v1"
    """Event tag."""

    agent_id: str
    """Agent whose pool runs dry."""

    runway_s: float = Field(ge=0)
    """Seconds from the forecast until the pool runs dry."""

    exhausts_at: datetime
    """When the pool runs dry."""

    limited_by: Literal["primary", "secondary"]
    """The quota window that runs dry first."""

    earliest_reset_at: datetime | None = None
    """The first reset of that window among the members, after the pool runs dry."""
