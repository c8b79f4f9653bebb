"""One selected request through its candidates: up to min(pool size, 3) providers, one deadline.

The first stream that opens is relayed; a client error is answered unchanged; every other
failure is recorded in live state and the next candidate is tried while the replica's retry
budget allows it (``retry_budget.py``; when it binds, the request ends with a 503 the SDK does
not retry). Nothing fails over once a byte has reached the client: a later failure ends the
stream with a ``response.failed`` event (``relay.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import Scope

from codexpool_router.answers import Send
from codexpool_router.attempt import Result, run_attempt
from codexpool_router.core import Core
from codexpool_router.endings import budget_exhausted, client_error, exhausted
from codexpool_router.inbound import Inbound
from codexpool_router.livewriter import epoch_ms, now_ms
from codexpool_router.outcome import Ledger
from codexpool_router.overflow import serve_overflow
from codexpool_router.quota import exhausted_reset, snapshot_from_headers
from codexpool_router.relay import deliver
from codexpool_router.shutdown import InFlight
from codexpool_router.upstream import client_headers, upstream_headers
from codexpool_shared.events import HEALTH_FAULTS
from codexpool_shared.store.selection import Candidate, Selection


async def serve(
    core: Core,
    scope: Scope,
    send: Send,
    ledger: Ledger,
    inbound: Inbound,
    selection: Selection,
    inflight: InFlight,
) -> None:
    """Answer the client from the first candidate that serves ``inbound``, or say why none did."""
    forwarded, originator, agent = client_headers(scope)
    deadline = ledger.started + core.settings.deadline_s
    quota_reset_ms = 0
    core.retry_budget.request()
    tried = False
    # Compaction answers one JSON document; everything else streams.
    accept = "application/json" if inbound.dialect == "compact" else "text/event-stream"
    for index, candidate in enumerate(selection.candidates):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        if tried and not core.retry_budget.try_retry():
            core.metrics.retry_budget_exhausted.inc()
            inflight.answering = True
            await budget_exhausted(send, ledger)
            return
        if candidate.max_concurrent and not await _lease(core, ledger, candidate, index):
            continue  # at its cap since the selection: the next candidate
        if index and ledger.attempts:
            failed = ledger.attempts[-1]
            core.metrics.failover(failed.provider, failed.outcome)

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
                accept=accept,
            )

        core.attempts_in_flight[candidate.name] += 1
        try:
            result = await _try_provider(core, ledger, inbound, candidate, headers_for, deadline)
        finally:
            core.attempts_in_flight[candidate.name] -= 1
        if result is None:
            continue
        tried = True
        if result.outcome == "success":
            await deliver(core, send, ledger, inbound, candidate, result, inflight)
            return
        if result.outcome == "client_error":
            inflight.answering = True
            await client_error(send, ledger, candidate, result)
            return
        if candidate.max_concurrent:
            core.leases.release(f"{ledger.request_id}:{candidate.name}")
        reset = _penalize(core, ledger, candidate, result)
        if reset:
            quota_reset_ms = reset if not quota_reset_ms else min(quota_reset_ms, reset)
    if await serve_overflow(core, send, ledger, inbound, selection, inflight, deadline):
        return
    inflight.answering = True
    await exhausted(send, ledger, selection, quota_reset_ms)


async def _lease(core: Core, ledger: Ledger, candidate: Candidate, index: int) -> bool:
    """Hold a lease on a capped candidate: the first one's was taken by the selection script,
    a later one's is taken now; False when that member is at its cap (or the store fails)."""
    lease_id = f"{ledger.request_id}:{candidate.name}"
    ledger.leases.append(lease_id)
    if index == 0:
        core.leases.hold(candidate.name, lease_id)
        return True
    try:
        return await core.leases.acquire(candidate.name, lease_id, candidate.max_concurrent)
    except Exception:
        core.metrics.background_errors.inc()
        return False


async def _try_provider(
    core: Core,
    ledger: Ledger,
    inbound: Inbound,
    candidate: Candidate,
    headers_for: Callable[[str], dict[str, str]],
    deadline: float,
) -> Result | None:
    if candidate.probe:
        core.metrics.circuit(candidate.name, "probe")
    fallback = ledger.selection is not None and ledger.selection.fallback
    token, refreshed = await _token(core, candidate, fallback)
    if token is None:
        ledger.skipped(candidate, "token_unavailable")
        return None
    unary = inbound.dialect == "compact"
    if unary:
        name, url, base = (
            "POST codex/responses/compact",
            core.compact_url,
            core.compact_attempt_attributes,
        )
    else:
        name, url, base = "POST codex/responses", core.responses_url, core.attempt_attributes
    while True:
        result = await ledger.attempted(
            candidate,
            name,
            base,
            run_attempt(
                core.egress.session(candidate.name),
                url,
                inbound.body,
                headers_for(token),
                budget_s=min(core.settings.ttfb_timeout_s, deadline - time.perf_counter()),
                client_timeout=core.client_timeout,
                stream=inbound.stream,
                unary=unary,
            ),
        )
        if result.headers:
            core.writer.quota(candidate.name, result.headers)
        if result.status != 401 or refreshed:
            return result
        refreshed = True
        new_token = await core.refresher.refresh(candidate.name, candidate.credential_version)
        if new_token is None:
            return result
        token = new_token


async def _token(core: Core, candidate: Candidate, fallback: bool) -> tuple[str | None, bool]:
    """The access token, and whether a 401 must fail over instead of refreshing.

    A selection from the local snapshot (``failopen.py``) never refreshes: without the store
    there is no shared lock, and refresh tokens are single-use.
    """
    expires = candidate.access_expires_at
    if expires is not None:
        left = expires - time.time()
        if left <= 5:
            if fallback:
                return None, True
            token = await core.refresher.refresh(candidate.name, candidate.credential_version)
            return token, True
        if left <= core.settings.refresh_window_s and not fallback:
            core.refresher.refresh_soon(candidate.name, candidate.credential_version)
    token = core.tokens.current(candidate.name, candidate.token_tag)
    if token is None and not fallback:
        token = await core.tokens.load(candidate.name)
    return token, fallback


def _penalize(core: Core, ledger: Ledger, candidate: Candidate, result: Result) -> int:
    """Record a failed attempt in live state; returns the quota reset (ms) of a usage limit."""
    now = now_ms()
    verdict = result.verdict
    name = candidate.name
    if result.outcome == "usage_limit":
        reset_s = (verdict.resets_at if verdict else None) or exhausted_reset(
            snapshot_from_headers(result.headers) if result.headers else None
        )
        until = (
            reset_s * 1000 if reset_s else now + int(core.settings.quota_fallback_cooldown_s * 1000)
        )
        ledger.pending.append(core.writer.cooldown(name, until, "usage_limit"))
        core.local.cool_down(name, until, quota=True)
        if candidate.probe:
            core.writer.release_probe(name)
        return until
    if result.outcome == "rate_limited":
        wait = (verdict.retry_after_s if verdict else None) or core.settings.rate_limit_cooldown_s
        core.writer.cooldown(name, now + int(wait * 1000), "rate_limited")
        core.local.cool_down(name, now + int(wait * 1000))
    if result.outcome in HEALTH_FAULTS:
        core.local.cool_down(name, now + int(core.settings.failopen_fault_cooldown_s * 1000))
        # A timeout while other attempts still wait on the account opens its circuit at once:
        # they are likely stalled too, and the requests after them should not wait as well.
        stalled = result.outcome == "timeout" and core.attempts_in_flight[name] > 0
        core.writer.failure(name, candidate.probe, epoch_ms(result.started), at_once=stalled)
    elif candidate.probe:
        core.writer.release_probe(name)
    return 0
