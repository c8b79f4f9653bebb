"""Answers that end a request without a relayed stream: client errors, exhausted pools, a
spent retry budget."""

from __future__ import annotations

import asyncio

import orjson

from codexpool_router.answers import (
    Send,
    quota_exhausted,
    router_headers,
    send_error,
    send_json,
    unavailable,
)
from codexpool_router.attempt import Result
from codexpool_router.livewriter import now_ms
from codexpool_router.outcome import Ledger
from codexpool_shared.errors import ApiError
from codexpool_shared.store.selection import Candidate, Selection


async def client_error(send: Send, ledger: Ledger, candidate: Candidate, result: Result) -> None:
    ledger.finish(candidate, "client_error", None)
    headers = [
        *router_headers(ledger.request_id, candidate.name, len(ledger.attempts)),
        (b"x-should-retry", b"false"),
    ]
    if result.status == 200 and result.tap is not None:
        failure = result.tap.failure or {}
        error = (failure.get("response") or {}).get("error") or failure.get("error") or {}
        body = orjson.dumps({"error": {"type": "invalid_request_error", "param": None, **error}})
        await send_json(send, 400, body, headers)
        return
    content_type = result.headers.get("content-type", "application/json").encode()
    await send_json(send, result.status or 400, result.body, headers, content_type)


async def exhausted(send: Send, ledger: Ledger, selection: Selection, quota_reset_ms: int) -> None:
    if ledger.pending:
        # Every replica must know about the exhausted accounts before the client comes
        # back, so that the next request is answered without an upstream attempt.
        await asyncio.wait(ledger.pending, timeout=0.25)
    now = now_ms()
    tried = {a.outcome for a in ledger.attempts}
    headers = router_headers(ledger.request_id, None, len(ledger.attempts))
    only_quota = tried <= {"usage_limit"} and not selection.other_wait_ms
    resets = [t for t in (quota_reset_ms, selection.quota_wait_ms) if t]
    if only_quota and resets:
        error, body = quota_exhausted(min(resets), now)
        ledger.final_outcome = "pool_exhausted"
        extra = [(k.encode(), v.encode()) for k, v in error.headers.items()]
        await send_json(send, 429, body, [*headers, *extra])
        return
    if not ledger.attempts and selection.at_capacity:
        # Busy, not broken: every eligible member is at its concurrency cap, and a slot frees
        # as soon as one of their streams ends.
        ledger.final_outcome = "no_eligible_provider"
        error = ApiError(
            503,
            "Every eligible provider in this pool is at its concurrency cap; retry shortly.",
            code="provider_at_capacity",
            type="service_unavailable_error",
            headers={"retry-after": "1", "x-should-retry": "true"},
        )
    elif not ledger.attempts:
        ledger.final_outcome = "no_eligible_provider"
        error = unavailable(
            "No provider in this pool is available right now.",
            "no_eligible_provider",
            selection.other_wait_ms,
            now,
        )
    else:
        ledger.final_outcome = "pool_exhausted"
        error = ApiError(
            503,
            "Every provider tried for this request failed.",
            code="all_providers_failed",
            type="service_unavailable_error",
        )
    await send_error(send, error, headers)


async def budget_exhausted(send: Send, ledger: Ledger) -> None:
    """The retry budget refused a failover: 503, and the SDK must not add its own retries to
    an upstream that is already failing."""
    ledger.final_outcome = "pool_exhausted"
    error = ApiError(
        503,
        "The provider tried for this request failed and the router's retry budget is spent.",
        code="retry_budget_exhausted",
        type="service_unavailable_error",
        headers={"x-should-retry": "false"},
    )
    await send_error(send, error, router_headers(ledger.request_id, None, len(ledger.attempts)))
