"""Versioned event schemas (docs/SPEC.md section 7), decoded by one ``EventAdapter``.

Versioning rule: consumers forbid fields they do not know (``extra="forbid"``, a payload with one
is dead-lettered), producers stay additive. Within a version a change is a new optional field
(or a rename through ``validation_alias``), and a producer may send the new field only once every
consumer runs a release that knows it: deploy consumers first, then producers. Anything else, or
a field that cannot wait for the consumers, is a new ``...v2`` model, which consumers accept
alongside v1 until every producer has moved. Payloads kept under ``tests/contract/fixtures/``
must parse forever.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from codexpool_shared.events.base import BaseEvent, EncodedEvent
from codexpool_shared.events.outcome import (
    HEALTH_FAULTS,
    VERDICTS,
    Attempt,
    AttemptFields,
    ChoiceReason,
    Considered,
    ConsideredFields,
    Decision,
    DecisionFields,
    FinalOutcome,
    OutcomeClass,
    RequestOutcomeV1,
    SkipReason,
    Strategy,
    TokenUsage,
    encode_outcome,
)
from codexpool_shared.events.pool import PoolChange, PoolChangedV1
from codexpool_shared.events.provider import HealthBand, ProviderStatus, ProviderStatusChangedV1
from codexpool_shared.events.rejected import RequestRejectedV1
from codexpool_shared.events.runway import PoolRunwayLowV1

Event = Annotated[
    RequestOutcomeV1
    | RequestRejectedV1
    | PoolChangedV1
    | ProviderStatusChangedV1
    | PoolRunwayLowV1,
    Field(discriminator="type"),
]
"""Any event, told apart by its ``type`` tag."""

EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)
"""Decodes (``validate_json``) and encodes (``dump_json``) every event."""

EVENT_MODELS: tuple[type[BaseEvent], ...] = (
    RequestOutcomeV1,
    RequestRejectedV1,
    PoolChangedV1,
    ProviderStatusChangedV1,
    PoolRunwayLowV1,
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
    "AttemptFields",
    "BaseEvent",
    "ChoiceReason",
    "Considered",
    "ConsideredFields",
    "Decision",
    "DecisionFields",
    "EncodedEvent",
    "Event",
    "EventAdapter",
    "FinalOutcome",
    "HealthBand",
    "OutcomeClass",
    "PoolChange",
    "PoolChangedV1",
    "PoolRunwayLowV1",
    "ProviderStatus",
    "ProviderStatusChangedV1",
    "RequestOutcomeV1",
    "RequestRejectedV1",
    "SkipReason",
    "Strategy",
    "TokenUsage",
    "encode_outcome",
    "event_type",
]
