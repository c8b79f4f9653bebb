"""Versioned event schemas (docs/SPEC.md section 7), decoded by one ``EventAdapter``.

Compatibility policy: within a version, changes are additive only (new optional fields; renames
through ``validation_alias``). A breaking change is a new ``...v2`` model, and consumers accept
both until every producer has moved. Payloads kept under ``tests/contract/fixtures/`` must parse
forever.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from codexpool_shared.events.base import BaseEvent
from codexpool_shared.events.outcome import (
    HEALTH_FAULTS,
    VERDICTS,
    Attempt,
    FinalOutcome,
    OutcomeClass,
    RequestOutcomeV1,
    Strategy,
    TokenUsage,
)
from codexpool_shared.events.pool import PoolChange, PoolChangedV1
from codexpool_shared.events.provider import HealthBand, ProviderStatus, ProviderStatusChangedV1

Event = Annotated[
    RequestOutcomeV1 | PoolChangedV1 | ProviderStatusChangedV1, Field(discriminator="type")
]
"""Any event, told apart by its ``type`` tag."""

EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
"""Decodes (``validate_json``) and encodes (``dump_json``) every event."""

EVENT_MODELS: tuple[type[BaseEvent], ...] = (
    RequestOutcomeV1,
    PoolChangedV1,
    ProviderStatusChangedV1,
)
"""Every event model, for schema generation and routing."""


def event_type(model: type[BaseEvent]) -> str:
    """The ``type`` tag of an event model, which is also its AMQP routing key and type."""
    default = model.model_fields["type"].default
    assert isinstance(default, str)
    return default


__all__ = [
    "EVENT_MODELS",
    "HEALTH_FAULTS",
    "VERDICTS",
    "Attempt",
    "BaseEvent",
    "Event",
    "EventAdapter",
    "FinalOutcome",
    "HealthBand",
    "OutcomeClass",
    "PoolChange",
    "PoolChangedV1",
    "ProviderStatus",
    "ProviderStatusChangedV1",
    "RequestOutcomeV1",
    "Strategy",
    "TokenUsage",
    "event_type",
]
