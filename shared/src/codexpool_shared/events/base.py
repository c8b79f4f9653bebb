"""What every event has in common."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event already in its JSON body, for a producer's hot path.

    Validating a model the producer fills from values it made itself costs more than the JSON:
    a builder such as ``outcome.encode_outcome`` writes the body the model's
    ``model_dump_json`` would give (a unit test pins the equality), and publishers take it as
    they take a model (``codec.decode`` reads it back).
    """

    model: type[BaseEvent]
    """The event's model: its ``type`` tag is the routing key."""

    event_id: str
    """The body's ``event_id``."""

    body: bytes
    """UTF-8 JSON, as ``model.model_dump_json()`` would give it."""
