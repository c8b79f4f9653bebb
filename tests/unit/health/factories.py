"""Outcome events for the health tests, written the way the router fills them in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from codexpool_health.store import Outcome
from codexpool_shared.events import Attempt, RequestOutcomeV1


def attempt(provider: str, outcome: str = "success", **fields: Any) -> Attempt:
    fields.setdefault("duration_ms", 100.0)
    return Attempt.model_validate({"provider": provider, "outcome": outcome, **fields})


def outcome_event(
    at: float, *attempts: Attempt, agent: str = "agent-1", **fields: Any
) -> RequestOutcomeV1:
    last = attempts[-1] if attempts else None
    return RequestOutcomeV1.model_validate(
        {
            "occurred_at": datetime.fromtimestamp(at, UTC),
            "request_id": "req",
            "agent_id": agent,
            "strategy": "round-robin",
            "stream": True,
            "attempts": attempts,
            "final_provider": last.provider if last else None,
            "final_outcome": last.outcome if last else "no_eligible_provider",
            "client_latency_ms": sum(a.duration_ms for a in attempts),
            **fields,
        }
    )


def as_outcome(event: RequestOutcomeV1) -> Outcome:
    return Outcome(event, event.model_dump_json().encode())
