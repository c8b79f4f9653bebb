"""``POST /v1/responses`` and ``POST /backend-api/codex/responses``: a plain ASGI handler.

It authenticates and selects in one Redis round trip, tries up to min(pool size, 3) providers
inside one deadline, relays the first stream that opens, and emits one outcome event. Nothing
fails over once a byte has reached the client: a later failure ends the stream with a
``response.failed`` event. Each request is tracked by the process's drain, whose deadline ends
it cleanly (``shutdown.py``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.types import Scope

from codexpool_router.answers import Send, router_headers, send_error
from codexpool_router.attempt import Result, run_attempt
from codexpool_router.core import Core, tracer
from codexpool_router.endings import client_error, exhausted
from codexpool_router.inbound import Inbound, agent_key_digest, header, parse_body, read_body
from codexpool_router.livewriter import now_ms
from codexpool_router.outcome import Ledger
from codexpool_router.quota import exhausted_reset, snapshot_from_headers
from codexpool_router.relay import deliver
from codexpool_router.shutdown import InFlight, shutting_down
from codexpool_router.upstream import client_headers, upstream_headers
from codexpool_shared.drain import Drain
from codexpool_shared.errors import ApiError
from codexpool_shared.events import HEALTH_FAULTS
from codexpool_shared.store.selection import Candidate, Selection
from codexpool_shared.telemetry import attributes as attr

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def _watch(receive: Receive, task: asyncio.Task[Any], ledger: Ledger) -> None:
    message = await receive()
    if message["type"] == "http.disconnect" and not ledger.finished:
        ledger.client_gone = True
        task.cancel()


class ResponsesEndpoint:
    def __init__(self, core: Callable[[], Core], route: str, drain: Drain) -> None:
        self._core = core
        self._route = route
        self._drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        core = self._core()
        ledger = Ledger(core, self._route, "req_" + secrets.token_hex(12))
        try:
            digest = agent_key_digest(scope)
            raw = await read_body(scope, receive, core.settings.max_body_bytes)
            session = header(scope, b"session-id") or header(scope, b"session_id")
            inbound = parse_body(raw, session)
            selection = await core.select(digest, inbound.session_digest)
        except ApiError as error:
            core.metrics.requests.labels(self._route, "rejected").inc()
            await send_error(send, error, router_headers(ledger.request_id, None, 0))
            return
        ledger.routed(selection, inbound)
        task = asyncio.current_task()
        assert task is not None
        inflight = InFlight(task)
        self._drain.track(inflight)
        watcher = asyncio.create_task(_watch(receive, task, ledger))
        try:
            await self._serve(core, scope, send, ledger, inbound, selection, inflight)
        except asyncio.CancelledError:
            if ledger.client_gone:
                task.uncancel()
                ledger.final_outcome = "cancelled"
            elif inflight.stopping:
                task.uncancel()
                ledger.final_outcome = "shutdown"
                headers = router_headers(ledger.request_id, None, len(ledger.attempts))
                await send_error(send, shutting_down(), headers)
            else:
                raise
        finally:
            self._drain.untrack(inflight)
            ledger.finished = True
            watcher.cancel()
            ledger.emit()

    async def _serve(
        self,
        core: Core,
        scope: Scope,
        send: Send,
        ledger: Ledger,
        inbound: Inbound,
        selection: Selection,
        inflight: InFlight,
    ) -> None:
        forwarded, originator, agent = client_headers(scope)
        deadline = ledger.started + core.settings.deadline_s
        quota_reset_ms = 0
        for index, candidate in enumerate(selection.candidates):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            if index:
                core.metrics.failovers.labels(ledger.attempts[-1].outcome).inc()

            def headers_for(token: str, c: Candidate = candidate) -> dict[str, str]:
                return upstream_headers(
                    forwarded,
                    originator,
                    agent,
                    token=token,
                    account_id=c.account_id,
                    default_originator=core.settings.originator,
                    default_user_agent=core.settings.user_agent,
                    request_id=ledger.request_id,
                )

            result = await self._try_provider(
                core, ledger, inbound, candidate, headers_for, deadline
            )
            if result is None:
                continue
            if result.outcome == "success":
                await deliver(core, send, ledger, inbound, candidate, result, inflight)
                return
            if result.outcome == "client_error":
                inflight.answering = True
                await client_error(send, ledger, candidate, result)
                return
            reset = self._penalize(core, ledger, candidate, result)
            if reset:
                quota_reset_ms = reset if not quota_reset_ms else min(quota_reset_ms, reset)
        inflight.answering = True
        await exhausted(send, ledger, selection, quota_reset_ms)

    async def _try_provider(
        self,
        core: Core,
        ledger: Ledger,
        inbound: Inbound,
        candidate: Candidate,
        headers_for: Callable[[str], dict[str, str]],
        deadline: float,
    ) -> Result | None:
        if candidate.probe:
            core.metrics.circuit.labels("probe").inc()
        token, refreshed = await self._token(core, candidate)
        if token is None:
            ledger.skipped(candidate, "token_unavailable")
            return None
        while True:
            span = tracer.start_span(
                "POST codex/responses",
                kind=SpanKind.CLIENT,
                attributes={
                    attr.PROVIDER: candidate.name,
                    attr.ATTEMPT: len(ledger.attempts) + 1,
                    attr.FALLBACK: bool(ledger.attempts),
                },
            )
            with trace.use_span(span, end_on_exit=False):
                result = await run_attempt(
                    core.session,
                    core.responses_url,
                    inbound.body,
                    headers_for(token),
                    budget_s=min(core.settings.ttfb_timeout_s, deadline - time.perf_counter()),
                    client_timeout=core.client_timeout,
                    stream=inbound.stream,
                )
            ledger.attempt(candidate, result, span)
            if result.headers:
                core.writer.quota(candidate.name, result.headers)
            if result.status != 401 or refreshed:
                return result
            refreshed = True
            new_token = await core.refresher.refresh(candidate.name, candidate.credential_version)
            if new_token is None:
                return result
            token = new_token

    async def _token(self, core: Core, candidate: Candidate) -> tuple[str | None, bool]:
        expires = candidate.access_expires_at
        if expires is not None:
            left = expires - time.time()
            if left <= 5:
                token = await core.refresher.refresh(candidate.name, candidate.credential_version)
                return token, True
            if left <= core.settings.refresh_window_s:
                core.refresher.refresh_soon(candidate.name, candidate.credential_version)
        return core.tokens.access_token(candidate.name, candidate.access_envelope), False

    def _penalize(self, core: Core, ledger: Ledger, candidate: Candidate, result: Result) -> int:
        """Record a failed attempt in live state; returns the quota reset (ms) of a usage limit."""
        now = now_ms()
        verdict = result.verdict
        name = candidate.name
        if result.outcome == "usage_limit":
            reset_s = (verdict.resets_at if verdict else None) or exhausted_reset(
                snapshot_from_headers(result.headers) if result.headers else None
            )
            until = (
                reset_s * 1000
                if reset_s
                else now + int(core.settings.quota_fallback_cooldown_s * 1000)
            )
            ledger.pending.append(core.writer.cooldown(name, until, "usage_limit"))
            if candidate.probe:
                core.writer.release_probe(name)
            return until
        if result.outcome == "rate_limited":
            wait = (
                verdict.retry_after_s if verdict else None
            ) or core.settings.rate_limit_cooldown_s
            core.writer.cooldown(name, now + int(wait * 1000), "rate_limited")
        if result.outcome in HEALTH_FAULTS:
            core.writer.failure(name, candidate.probe)
        elif candidate.probe:
            core.writer.release_probe(name)
        return 0
