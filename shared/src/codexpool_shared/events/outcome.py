"""``request.outcome.v1``: what happened to one client request, published by the router."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal, TypedDict

import orjson
from pydantic import BaseModel, ConfigDict, Field

from codexpool_shared.events.base import BaseEvent, EncodedEvent
from codexpool_shared.ids import uuid7_str

Strategy = Literal["round-robin", "primary-first", "quota-aware"]
"""The pool strategies (docs/SPEC.md section 5)."""

OutcomeClass = Literal[
    "success",
    "client_error",
    "usage_limit",
    "rate_limited",
    "auth_error",
    "server_error",
    "connection_error",
    "timeout",
    "stream_error",
    "blocked",
    "cancelled",
    "shutdown",
]
"""How one upstream attempt ended (docs/reference/codex-backend-protocol.md section 9);
``shutdown``: the router's drain deadline ended it (``codexpool_shared.drain``)."""

FinalOutcome = Literal[OutcomeClass, "pool_exhausted", "no_eligible_provider"]
"""How the client request ended: an attempt's class, or an answer given with no attempt left."""

HEALTH_FAULTS: frozenset[str] = frozenset(
    {"server_error", "connection_error", "timeout", "stream_error", "rate_limited"}
)
"""Outcome classes that count against a provider's health. Quota exhaustion, client errors,
auth errors (handled by refresh or re-auth), client cancellations and the router's own shutdown
do not."""

VERDICTS: frozenset[str] = HEALTH_FAULTS | {"success"}
"""Outcome classes that say something about the provider's health (the success-rate base)."""


class TokenUsage(BaseModel):
    """Token counts reported by the upstream in ``response.completed``."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    input_tokens: int = Field(ge=0)
    """Prompt tokens."""

    output_tokens: int = Field(ge=0)
    """Generated tokens."""

    total_tokens: int = Field(ge=0)
    """Input plus output."""

    cached_input_tokens: int | None = Field(default=None, ge=0)
    """Prompt tokens served from the prompt cache."""

    reasoning_output_tokens: int | None = Field(default=None, ge=0)
    """Output tokens spent on reasoning."""


class Attempt(BaseModel):
    """One upstream attempt within a request, in the order they were made."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    provider: str
    """Name of the provider (account) tried."""

    outcome: OutcomeClass
    """How the attempt ended."""

    status_code: int | None = None
    """Upstream HTTP status, when one arrived."""

    ttfb_ms: float | None = Field(default=None, ge=0)
    """Time to the upstream's first byte, when one arrived."""

    duration_ms: float = Field(ge=0)
    """Time the attempt took, start to end."""

    fallback: bool = False
    """True when this attempt follows a failed one in the same request."""

    error_code: str | None = None
    """Upstream error code (``usage_limit_reached``, ``server_is_overloaded``, ...), if any."""


SkipReason = Literal[
    "cooldown",
    "circuit_open",
    "probe_in_progress",
    "needs_reauth",
    "disabled",
    "not_registered",
]
"""Why a pool member was not eligible for a request (docs/SPEC.md section 5, step 2)."""

ChoiceReason = Literal["affinity", "probe", "strategy_order", "beyond_attempt_limit"]
"""Why an eligible member stood where it did: the session's provider, the one probing its
half-open circuit, its place in the strategy's order, or eligible but past the attempt limit."""


class Considered(BaseModel):
    """One pool member as the selection saw it."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    provider: str
    """Member name."""

    eligible: bool
    """Whether it passed the hard filter (active, no cooldown, circuit not open)."""

    reason: SkipReason | ChoiceReason
    """Why it was skipped, or why it stood where it did when eligible."""

    rank: int | None = Field(default=None, ge=0)
    """Its place in the attempt order (0 first), when it was a candidate."""

    until: datetime | None = None
    """End of the cooldown, open circuit or probe in progress that made it ineligible."""

    detail: str | None = None
    """The cooldown's cause (``usage_limit``, ``rate_limited``, ...) or the member's status."""


class Decision(BaseModel):
    """The routing decision of one request: every member and why it was or was not tried."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    candidates: tuple[Considered, ...] = ()
    """Candidates in attempt order, then eligible members past the limit, then skipped ones."""

    pool_size: int = Field(ge=0)
    """Members in the pool when the request was routed."""

    local_snapshot: bool = False
    """Decided from the router's local snapshot because the store did not answer."""


class RequestOutcomeV1(BaseEvent):
    """One client request's outcome; exactly one per request."""

    type: Literal["request.outcome.v1"] = "request.outcome.v1"
    """Event tag."""

    request_id: str
    """The ``x-request-id`` answered to the client."""

    agent_id: str
    """Agent whose key made the request."""

    strategy: Strategy
    """The pool's strategy when the request was routed."""

    pool_version: int | None = None
    """The pool version the request was routed with."""

    model: str | None = None
    """Model the client asked for."""

    stream: bool
    """Whether the client asked for a stream."""

    attempts: tuple[Attempt, ...] = ()
    """Upstream attempts in order; empty when no provider was eligible."""

    final_provider: str | None = None
    """Provider whose answer reached the client, if any."""

    final_outcome: FinalOutcome
    """How the request ended for the client."""

    client_latency_ms: float = Field(ge=0)
    """Time from the request's arrival to the end of the answer."""

    usage: TokenUsage | None = None
    """Token usage, when the upstream reported it."""

    decision: Decision | None = None
    """Why the request went where it went (absent when the router's explanations are off)."""

    overflow: bool = False
    """The pool's opt-in overflow endpoint was tried because no member was eligible (issue 19);
    its attempt is the one with provider ``overflow``, which is not a pool member."""


class ConsideredFields(TypedDict):
    """A ``Considered``'s fields, as ``DecisionFields`` holds them."""

    provider: str
    eligible: bool
    reason: SkipReason | ChoiceReason
    rank: int | None
    until: datetime | None
    detail: str | None


class DecisionFields(TypedDict):
    """A ``Decision``'s fields, as ``encode_outcome`` takes them."""

    candidates: list[ConsideredFields]
    pool_size: int
    local_snapshot: bool


class AttemptFields(TypedDict):
    """An ``Attempt``'s fields, as ``encode_outcome`` takes them."""

    provider: str
    outcome: OutcomeClass
    status_code: int | None
    ttfb_ms: float | None
    duration_ms: float
    fallback: bool
    error_code: str | None


def encode_outcome(
    *,
    request_id: str,
    agent_id: str,
    strategy: Strategy,
    pool_version: int | None,
    model: str | None,
    stream: bool,
    attempts: Sequence[AttemptFields],
    final_provider: str | None,
    final_outcome: FinalOutcome,
    client_latency_ms: float,
    usage: TokenUsage | None,
    traceparent: str | None,
    decision: DecisionFields | None,
    overflow: bool,
) -> EncodedEvent:
    """The body ``RequestOutcomeV1(...).model_dump_json()`` gives for these fields, unvalidated.

    The router's one event per request: building the models (validation included) and dumping
    them cost about three times this. Only for values the caller made itself and typed: nothing
    here checks them, and a consumer dead-letters a body its model refuses. The keys are the
    models' fields in their declaration order; ``tests/unit/shared/test_events.py`` pins the
    bytes against ``model_dump_json``.
    """
    event_id = uuid7_str()
    body = orjson.dumps(
        {
            "event_id": event_id,
            "occurred_at": datetime.now(UTC),
            "traceparent": traceparent,
            "tracestate": None,
            "type": "request.outcome.v1",
            "request_id": request_id,
            "agent_id": agent_id,
            "strategy": strategy,
            "pool_version": pool_version,
            "model": model,
            "stream": stream,
            "attempts": attempts,
            "final_provider": final_provider,
            "final_outcome": final_outcome,
            "client_latency_ms": client_latency_ms,
            "usage": None if usage is None else usage.model_dump(),
            "decision": decision,
            "overflow": overflow,
        },
        option=orjson.OPT_UTC_Z,
    )
    # orjson's result keeps its whole write buffer (about 8 KB for a 1.5 KB body); a publisher
    # may hold the body for a while (10,000 of them in a broker outage): keep an exact copy.
    return EncodedEvent(RequestOutcomeV1, event_id, bytes(memoryview(body)))
