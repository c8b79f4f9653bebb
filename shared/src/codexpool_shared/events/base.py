"""What every event has in common."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from codexpool_shared.ids import uuid7


def _now() -> datetime:
    return datetime.now(UTC)


class BaseEvent(BaseModel):
    """Fields shared by every event; subclasses add a ``type`` literal, their tag.

    Unknown fields are refused (``extra="forbid"``): a consumer dead-letters a payload it does
    not fully understand rather than apply part of it. So a producer adds an optional field only
    once every consumer knows it (see the package's versioning rule).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    event_id: UUID = Field(default_factory=uuid7)
    """UUIDv7, unique per event; consumers deduplicate on it."""

    occurred_at: datetime = Field(default_factory=_now)
    """When the event happened (UTC)."""

    traceparent: str | None = None
    """W3C traceparent of the work that caused the event, captured when the event was made."""

    tracestate: str | None = None
    """W3C tracestate that goes with ``traceparent``."""
