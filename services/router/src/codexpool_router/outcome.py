"""The ledger of one request: its attempts, their spans and metrics, and its one outcome event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue
from starlette.types import Message

from codexpool_router.answers import Send
from codexpool_router.attempt import Result
from codexpool_router.inbound import Inbound
from codexpool_router.metrics import AccountState
from codexpool_router.sse import SseTap
from codexpool_shared.errors import ApiError
from codexpool_shared.events import (
    HEALTH_FAULTS,
    FinalOutcome,
    OutcomeClass,
    RequestRejectedV1,
    TokenUsage,
    encode_outcome,
)
from codexpool_shared.store.explain import decision_fields
from codexpool_shared.store.selection import Candidate, Selection
from codexpool_shared.telemetry import attributes as attr
from codexpool_shared.telemetry import deferred

if TYPE_CHECKING:
    from codexpool_router.core import Core

_tracer = trace.get_tracer("codexpool.router")


@dataclass(slots=True)
class AttemptSpan:
    """An attempt's CLIENT span, made by ``Ledger.emit`` once the answer is over.

    Nothing is parented to it (the upstream sessions are not instrumented), so it need not exist
    while the attempt runs, and its cost stays off the path to the client's first byte.
    """

    name: str
    attributes: dict[str, AttributeValue]
    start_ns: int = field(default_factory=time.time_ns)
    end_ns: int = 0
    """0 while the attempt runs."""
    error: str | None = None


@dataclass(slots=True)
class _Record:
    provider: str
    outcome: OutcomeClass
    status_code: int | None
    ttfb_ms: float | None
    started: float
    duration_ms: float
    fallback: bool
    error_code: str | None
    span: AttemptSpan | None
    interrupted: bool = False
    """Stopped before it had a result; its class is settled (and counted) by ``emit``."""


def traceparent(span: Span) -> str | None:
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


class Ledger:
    def __init__(self, core: Core, route: str, request_id: str) -> None:
        self.core = core
        self.route = route
        self.request_id = request_id
        self.started = time.perf_counter()
        self.attempts: list[_Record] = []
        self.selection: Selection | None = None
        self.inbound: Inbound | None = None
        self.final_provider: str | None = None
        self.final_outcome: FinalOutcome | None = None
        self.overflow = False
        """The pool's overflow endpoint was tried (``overflow.py``)."""
        self.usage: TokenUsage | None = None
        self.leases: list[str] = []
        """Concurrency leases this request took (``leases.py``), released by ``emit``."""
        self.finished = False
        self.client_gone = False
        self._span = trace.get_current_span()
        self._attributes: dict[str, AttributeValue] = {}
        """The request span's attributes, set on it by ``emit``, after the answer."""
        self._emitted = False
        self._rejected = False
        self._first_byte: float | None = None
        self._last_byte: float | None = None
        self.pending: list[asyncio.Task[None]] = []

    def timed(self, send: Send) -> Send:
        """``send``, noting when the answer's first and last bytes went to the client."""

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                self._first_byte = time.perf_counter()
            elif not message.get("more_body", False):
                self._last_byte = time.perf_counter()

        return timed_send

    def counted(self) -> None:
        """Count the request and its client-facing latencies, once it has been answered."""
        outcome = "rejected" if self._rejected else (self.final_outcome or "cancelled")
        first = self._first_byte
        end = self._last_byte or time.perf_counter()
        self.core.metrics.request(
            self.route,
            outcome,
            None if first is None else first - self.started,
            end - self.started,
        )

    def routed(self, selection: Selection, inbound: Inbound) -> None:
        self.selection = selection
        self.inbound = inbound
        self._attributes.update(
            {
                attr.AGENT_ID: selection.agent_id,
                attr.STRATEGY: selection.strategy,
                attr.REQUEST_ID: self.request_id,
                attr.GEN_AI_PROVIDER_NAME: attr.GEN_AI_OPENAI,
                attr.GEN_AI_SYSTEM: attr.GEN_AI_OPENAI,
                attr.GEN_AI_OPERATION_NAME: attr.GEN_AI_CHAT,
                attr.GEN_AI_REQUEST_MODEL: inbound.model,
            }
        )
        for candidate in selection.candidates:
            self.core.metrics.account_state(
                candidate.name, "half_open" if candidate.probe else "closed"
            )

    async def attempted(
        self,
        candidate: Candidate,
        name: str,
        attributes: Mapping[str, AttributeValue],
        attempt: Coroutine[Any, Any, Result],
    ) -> Result:
        """Await one upstream ``attempt`` on ``candidate`` and record it, with its CLIENT span
        ``name``: ``attributes`` plus the model, the provider, the attempt's number and whether
        it is a fallback."""
        assert self.inbound is not None
        span = AttemptSpan(
            name,
            {
                **attributes,
                attr.GEN_AI_REQUEST_MODEL: self.inbound.model,
                attr.PROVIDER: candidate.name,
                attr.ATTEMPT: len(self.attempts) + 1,
                attr.FALLBACK: bool(self.attempts),
            },
        )
        started = time.perf_counter()
        try:
            result = await attempt
        except BaseException:
            # Cancelled before the answer started (client gone, drain deadline): the attempt
            # still belongs in the outcome event, which ends its span.
            self.interrupted(candidate, started, span)
            raise
        self.attempt(candidate, result, span)
        return result

    def attempt(self, candidate: Candidate, result: Result, span: AttemptSpan) -> None:
        metrics = self.core.metrics
        metrics.attempt(candidate.name, result.outcome)
        if result.ttfb_s is not None:
            metrics.ttfb.observe(result.ttfb_s)
        record = _Record(
            provider=candidate.name,
            outcome=result.outcome,
            status_code=result.status,
            ttfb_ms=None if result.ttfb_s is None else result.ttfb_s * 1000,
            started=result.started,
            duration_ms=(time.perf_counter() - result.started) * 1000,
            # A retry on the same provider (after a token refresh) is not a switch to it.
            fallback=bool(self.attempts) and self.attempts[-1].provider != candidate.name,
            error_code=result.error_code,
            span=span,
        )
        self.attempts.append(record)
        self._seen(candidate, result.outcome)
        if result.response is None:
            if result.tap is not None:
                # Not streamed to the client: the whole upstream stream has been read.
                self._answered(span, result.tap, result.tap.usage())
            self._end(record)

    def _answered(self, attempt: AttemptSpan | None, tap: SseTap, usage: TokenUsage | None) -> None:
        """Put what ``response.completed`` reported (``usage`` is ``tap.usage()``) on the
        attempt's span and the request's."""
        completed = tap.completed
        if completed is None:
            return
        found: dict[str, AttributeValue] = {}
        for name, key in ((attr.GEN_AI_RESPONSE_ID, "id"), (attr.GEN_AI_RESPONSE_MODEL, "model")):
            if isinstance(value := completed.get(key), str):
                found[name] = value
        if usage is not None:
            found[attr.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
            found[attr.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if attempt is not None:
            attempt.attributes.update(found)
        self._attributes.update(found)

    def _seen(self, candidate: Candidate, outcome: OutcomeClass) -> None:
        """This replica's view of the provider after an attempt (``account_state``)."""
        state: AccountState | None = None
        if outcome in ("usage_limit", "rate_limited"):
            state = "cooling_down"
        elif outcome in HEALTH_FAULTS:
            # The circuit opens at the threshold's failure, or at once on a failed probe.
            opens = candidate.probe or candidate.failures + 1 >= self.core.settings.circuit_failures
            state = "open" if opens else None
        elif outcome in ("success", "client_error"):
            state = "closed"
        if state is not None:
            self.core.metrics.account_state(candidate.name, state)

    def interrupted(self, candidate: Candidate, started: float, span: AttemptSpan) -> None:
        """An attempt stopped before its result (a client disconnect or the drain's deadline)."""
        self.attempts.append(
            _Record(
                provider=candidate.name,
                outcome="cancelled",
                status_code=None,
                ttfb_ms=None,
                started=started,
                duration_ms=0.0,
                fallback=bool(self.attempts) and self.attempts[-1].provider != candidate.name,
                error_code=None,
                span=span,
                interrupted=True,
            )
        )

    def skipped(self, candidate: Candidate, code: str) -> None:
        self.attempts.append(
            _Record(
                candidate.name,
                "auth_error",
                None,
                None,
                time.perf_counter(),
                0.0,
                bool(self.attempts),
                code,
                None,
            )
        )

    def _end(self, record: _Record) -> None:
        self.core.metrics.duration.observe(record.duration_ms / 1000)
        span = record.span
        if span is None:
            return
        span.end_ns = time.time_ns()
        span.attributes[attr.OUTCOME] = record.outcome
        if record.status_code is not None:
            span.attributes[attr.HTTP_RESPONSE_STATUS_CODE] = record.status_code
        if record.outcome != "success":
            span.error = record.error_code or record.outcome

    def finish(self, candidate: Candidate, outcome: OutcomeClass, usage: TokenUsage | None) -> None:
        self.final_provider = candidate.name
        self.final_outcome = outcome
        self.usage = usage

    def relayed(self, outcome: OutcomeClass, code: str | None, tap: SseTap) -> None:
        record = self.attempts[-1]
        record.outcome = outcome
        record.error_code = code
        record.duration_ms = (time.perf_counter() - record.started) * 1000
        self.usage = tap.usage()
        self._answered(record.span, tap, self.usage)
        self._end(record)
        self.final_provider = record.provider
        self.final_outcome = outcome

    def rejected(self, error: ApiError, agent_id: str | None) -> None:
        """Publish the one event of a request refused before routing (no outcome follows)."""
        self._emitted = True
        self._rejected = True
        self.core.publish(
            RequestRejectedV1(
                request_id=self.request_id,
                agent_id=agent_id,
                reason=error.code or error.type,
                status_code=error.status_code,
                route=self.route,
                traceparent=traceparent(self._span),
            )
        )

    def emit(self) -> None:
        for lease_id in self.leases:
            self.core.leases.release(lease_id)
        if self._emitted or self.selection is None or self.inbound is None:
            return
        self._emitted = True
        for record in self.attempts:
            if record.span is not None and not record.span.end_ns:
                if self.client_gone:
                    record.outcome = "cancelled"
                elif record.interrupted and self.final_outcome == "shutdown":
                    record.outcome = "shutdown"
                if record.interrupted:
                    self.core.metrics.attempt(record.provider, record.outcome)
                record.duration_ms = (time.perf_counter() - record.started) * 1000
                self._end(record)
            if record.span is not None:
                span = record.span
                deferred.finished(
                    _tracer,
                    span.name,
                    SpanKind.CLIENT,
                    span.attributes,
                    span.start_ns,
                    span.end_ns,
                    span.error,
                )
        if self._span.is_recording():
            self._span.set_attributes(self._attributes)
        final: FinalOutcome = self.final_outcome or "cancelled"
        selection = self.selection
        if selection.count_tokens and self.usage is not None and self.usage.total_tokens:
            self.core.writer.agent_tokens(selection.agent_id, self.usage.total_tokens)
        event = encode_outcome(
            request_id=self.request_id,
            agent_id=selection.agent_id,
            strategy=selection.strategy,
            pool_version=selection.pool_version,
            model=self.inbound.model,
            stream=self.inbound.stream,
            attempts=[
                {
                    "provider": r.provider,
                    "outcome": r.outcome,
                    "status_code": r.status_code,
                    "ttfb_ms": r.ttfb_ms,
                    "duration_ms": r.duration_ms,
                    "fallback": r.fallback,
                    "error_code": r.error_code,
                }
                for r in self.attempts
            ],
            final_provider=self.final_provider,
            final_outcome=final,
            client_latency_ms=(time.perf_counter() - self.started) * 1000,
            usage=self.usage,
            traceparent=traceparent(self._span),
            decision=decision_fields(selection) if self.core.settings.explain else None,
            overflow=self.overflow,
        )
        self.core.publish(event)
