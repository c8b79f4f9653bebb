"""Relaying an upstream answer that opened: the whole stream, or the assembled response.

From here on nothing fails over: a failure, or the drain's deadline (``shutdown.py``), ends the
stream with a ``response.failed`` event.
"""

from __future__ import annotations

import aiohttp
import orjson

from codexpool_router import chat
from codexpool_router.answers import Send, router_headers, send_json
from codexpool_router.attempt import Result
from codexpool_router.core import Core
from codexpool_router.inbound import Inbound
from codexpool_router.livewriter import epoch_ms
from codexpool_router.outcome import Ledger
from codexpool_router.shutdown import CODE, MESSAGE, InFlight
from codexpool_router.sse import SseTap, error_event, usage_of
from codexpool_router.upstream import passed_back
from codexpool_shared.events import HEALTH_FAULTS, OutcomeClass
from codexpool_shared.store.overflow import OVERFLOW
from codexpool_shared.store.selection import Candidate


async def served(core: Core, ledger: Ledger, inbound: Inbound, candidate: Candidate) -> None:
    """Record a success; a probe's closes the circuit before its answer ends, so the client's
    next request already finds the provider back (not still "probe in flight")."""
    selection = ledger.selection
    assert selection is not None
    if candidate.probe or candidate.failures:
        verdict = core.writer.success(candidate.name, candidate.probe)
        if candidate.probe:
            await verdict
    # The overflow is no member: a session does not stick to it.
    if (
        inbound.session_digest
        and candidate.name != OVERFLOW
        and candidate.name != selection.candidates[0].name
    ):
        core.writer.affinity(selection.agent_id, inbound.session_digest, candidate.name)


async def deliver(
    core: Core,
    send: Send,
    ledger: Ledger,
    inbound: Inbound,
    candidate: Candidate,
    result: Result,
    inflight: InFlight,
) -> None:
    headers = router_headers(ledger.request_id, candidate.name, len(ledger.attempts))
    passed = passed_back(result.raw_headers)
    if inbound.dialect == "compact":
        inflight.answering = True
        ledger.finish(candidate, "success", usage_of(_json(result.body)))
        await served(core, ledger, inbound, candidate)
        await send_json(send, 200, result.body, [*headers, *passed])
        return
    tap = result.tap
    assert tap is not None
    if not inbound.stream:
        inflight.answering = True
        response = tap.final_response()
        if inbound.dialect == "chat":
            response = chat.completion(response, ledger.request_id, inbound.model)
        body = orjson.dumps(response)
        ledger.finish(candidate, "success", tap.usage())
        await served(core, ledger, inbound, candidate)
        await send_json(send, 200, body, [*headers, *passed])
        return
    stream = result.response
    assert stream is not None
    inflight.relaying(stream, tap)
    # Chat Completions clients get the events translated; Responses clients get them as they are.
    chunks = (
        chat.ChunkStream(ledger.request_id, inbound.model, usage=inbound.include_usage)
        if inbound.dialect == "chat"
        else None
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache"),
                *headers,
                *passed,
            ],
        }
    )

    def translated(data: bytes) -> bytes:
        return chunks.feed(data) if chunks is not None else data

    # Relayed, not sent yet: held back only once the upstream stream has ended, so that its
    # last bytes and the answer's end leave in one write.
    pending = translated(tap.relay(result.first_chunk))
    content = stream.content
    try:
        while not content.at_eof():
            if pending:
                await send({"type": "http.response.body", "body": pending, "more_body": True})
                pending = b""
            chunk = await content.readany()
            if not chunk:
                break
            pending = translated(tap.relay(chunk))
        stream.release()
    except (aiohttp.ClientError, TimeoutError):
        stream.close()
    except BaseException:
        stream.close()
        raise
    # Cut by the drain: a held-back event is incomplete, and the client sees the router's end.
    shutdown = inflight.stopping and tap.terminal is None
    if (held := tap.flush()) and not shutdown:
        pending += translated(held)
    outcome: OutcomeClass
    code: str | None
    outcome, code = ("shutdown", CODE) if shutdown else tap.outcome()
    if tap.terminal is None:
        ending = (
            error_event(ledger.request_id, CODE, MESSAGE)
            if shutdown
            else error_event(
                ledger.request_id,
                "upstream_stream_error",
                "The upstream stream ended before the response completed.",
            )
        )
        pending += translated(ending)
    # A probe's verdict (and a recovered provider's) is stored before the answer ends, so that
    # the client's next request finds the provider back; anything else is recorded after.
    verdict_first = outcome == "success" and (candidate.probe or candidate.failures)
    if verdict_first:
        await _recorded(core, ledger, inbound, candidate, result, outcome, code, tap)
    ledger.finished = True
    await send({"type": "http.response.body", "body": pending, "more_body": False})
    if not verdict_first:
        await _recorded(core, ledger, inbound, candidate, result, outcome, code, tap)


async def _recorded(
    core: Core,
    ledger: Ledger,
    inbound: Inbound,
    candidate: Candidate,
    result: Result,
    outcome: OutcomeClass,
    code: str | None,
    tap: SseTap,
) -> None:
    """Record how a relayed stream ended, in the ledger and in live state."""
    ledger.relayed(outcome, code, tap)
    if outcome == "success":
        await served(core, ledger, inbound, candidate)
    elif outcome in HEALTH_FAULTS:
        core.writer.failure(candidate.name, candidate.probe, epoch_ms(result.started))


def _json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
