"""A request's explanation: its outcome event (kept by the health service) in the documented
shape, plus the same decision in words for the pool page."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from codexpool_shared.events import (
    Attempt,
    Considered,
    FinalOutcome,
    RequestOutcomeV1,
    Strategy,
    TokenUsage,
)

_ORDER = {
    "round-robin": "next in round-robin",
    "primary-first": "first eligible in pool order (primary-first)",
    "quota-aware": "most remaining quota (quota-aware)",
}
_SKIP = {
    "circuit_open": "circuit open",
    "probe_in_progress": "another request is probing its half-open circuit",
    "needs_reauth": "needs re-authentication",
    "disabled": "disabled",
    "not_registered": "not registered",
}


class RequestSummary(BaseModel):
    request_id: str
    at: datetime
    final_provider: str | None
    final_outcome: FinalOutcome
    attempts: int
    client_latency_ms: float


class RequestExplanation(BaseModel):
    request_id: str
    agent_id: str
    at: datetime
    strategy: Strategy
    pool_version: int | None
    model: str | None
    stream: bool
    explained: bool
    """False when the router's explanations were off: only the attempts are known."""
    candidates: list[Considered]
    """Every member: tried in ``rank`` order, eligible but not reached, or skipped and why."""
    attempts: list[Attempt]
    final_provider: str | None
    final_outcome: FinalOutcome
    client_latency_ms: float
    usage: TokenUsage | None
    words: list[str]
    """The same decision in sentences, in the order it was made."""


def summary(event: RequestOutcomeV1) -> RequestSummary:
    return RequestSummary(
        request_id=event.request_id,
        at=event.occurred_at,
        final_provider=event.final_provider,
        final_outcome=event.final_outcome,
        attempts=len(event.attempts),
        client_latency_ms=event.client_latency_ms,
    )


def _clock(at: datetime | None) -> str:
    return "" if at is None else f" until {at:%H:%M:%S} UTC"


def _failure(attempt: Attempt) -> str:
    status = f", HTTP {attempt.status_code}" if attempt.status_code else ""
    code = f" {attempt.error_code}" if attempt.error_code else ""
    return f"{attempt.outcome}{status}{code}"


def _skipped(c: Considered) -> str:
    if c.reason == "cooldown":
        cause = f" after {c.detail}" if c.detail else ""
        return f"{c.provider} skipped: cooling down{_clock(c.until)}{cause}"
    return f"{c.provider} skipped: {_SKIP.get(c.reason, c.reason)}{_clock(c.until)}"


def words(event: RequestOutcomeV1) -> list[str]:
    """The decision and the attempts in sentences ("p1 skipped: cooling down until ...")."""
    out: list[str] = []
    decision = event.decision
    tried: dict[str, list[Attempt]] = {}
    for attempt in event.attempts:
        tried.setdefault(attempt.provider, []).append(attempt)
    if decision is not None:
        if decision.local_snapshot:
            out.append("Routed from the router's local snapshot (the store did not answer).")
        out += [_skipped(c) for c in decision.candidates if not c.eligible]
    previous: Attempt | None = None
    for index, attempt in enumerate(event.attempts):
        if previous is not None and previous.provider == attempt.provider:
            out.append(f"{attempt.provider} retried after a token refresh")
        elif index == 0:
            why = _ORDER[event.strategy]
            if decision is not None:
                first = next(
                    (c for c in decision.candidates if c.provider == attempt.provider), None
                )
                if first is not None and first.reason == "affinity":
                    why = "the request's session sticks to it"
                elif first is not None and first.reason == "probe":
                    why = "probing its half-open circuit"
            out.append(f"{attempt.provider} chosen: {why}")
        else:
            assert previous is not None
            out.append(
                f"{attempt.provider} tried next: {previous.provider} failed ({_failure(previous)})"
            )
        previous = attempt
    if decision is not None:
        for c in decision.candidates:
            if c.eligible and c.provider not in tried:
                if c.reason == "beyond_attempt_limit":
                    out.append(f"{c.provider} eligible, not reached (attempt limit)")
                elif event.final_provider is not None:
                    out.append(f"{c.provider} not tried: {event.final_provider} answered")
    if event.final_provider is not None and event.final_outcome == "success":
        out.append(f"Answered by {event.final_provider} after {len(event.attempts)} attempt(s).")
    elif event.final_provider is not None:
        out.append(f"Ended on {event.final_provider}: {event.final_outcome}.")
    else:
        out.append(f"No provider answered: {event.final_outcome}.")
    return out


def explanation(event: RequestOutcomeV1) -> RequestExplanation:
    decision = event.decision
    return RequestExplanation(
        request_id=event.request_id,
        agent_id=event.agent_id,
        at=event.occurred_at,
        strategy=event.strategy,
        pool_version=event.pool_version,
        model=event.model,
        stream=event.stream,
        explained=decision is not None,
        candidates=list(decision.candidates) if decision else [],
        attempts=list(event.attempts),
        final_provider=event.final_provider,
        final_outcome=event.final_outcome,
        client_latency_ms=event.client_latency_ms,
        usage=event.usage,
        words=words(event),
    )
