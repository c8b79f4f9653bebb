"""Delivering an accepted request: latency, then the transcript, bent by a stream fault."""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Send

from codexpool_sim.asgi import JSON, Headers, stall
from codexpool_sim.faults import FaultKind, FaultSpec
from codexpool_sim.transcript import Transcript, render

SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


async def _pause(ms: int) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


async def stream(
    send: Send,
    receive: Receive,
    headers: Headers,
    transcript: Transcript,
    ids: tuple[bytes, bytes],
    latency: tuple[int, int],
    fault: FaultSpec | None,
) -> None:
    """SSE answer; ``ids`` are the response id and creation time, ``latency`` TTFB and gap."""
    ttfb_ms, delay_ms = latency
    kind = fault.kind if fault is not None else None
    if (
        fault is not None
        and kind is FaultKind.STALL_HEADERS
        and await stall(receive, fault.duration_ms)
    ):
        return
    await _pause(ttfb_ms)
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE, *headers]})
    if kind not in (FaultKind.CUT_STREAM, FaultKind.STALL_STREAM) and delay_ms <= 0:
        await send({"type": "http.response.body", "body": render(transcript.blob, *ids)})
        return
    break_at = fault.after_events if fault is not None else -1
    for index, template in enumerate(transcript.frames):
        if index == break_at:
            if kind is FaultKind.CUT_STREAM:
                # Returning without the final body message makes the server drop the
                # connection mid-body: the client sees a truncated chunked stream.
                return
            if fault is not None and await stall(receive, fault.duration_ms):
                return
        if index:
            await _pause(delay_ms)
        await send(
            {"type": "http.response.body", "body": render(template, *ids), "more_body": True}
        )
    if kind is FaultKind.CUT_STREAM:
        return
    await send({"type": "http.response.body", "body": b""})


async def unary(
    send: Send,
    receive: Receive,
    headers: Headers,
    transcript: Transcript,
    ids: tuple[bytes, bytes],
    latency: tuple[int, int],
    fault: FaultSpec | None,
) -> None:
    """JSON answer, after the time the stream would have taken."""
    ttfb_ms, delay_ms = latency
    kind = fault.kind if fault is not None else None
    if fault is not None and kind in (FaultKind.STALL_HEADERS, FaultKind.STALL_STREAM):
        if await stall(receive, fault.duration_ms):
            return
    await _pause(ttfb_ms + delay_ms * (len(transcript.frames) - 1))
    body = render(transcript.body, *ids)
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [JSON, *headers, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    if kind is FaultKind.CUT_STREAM:
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        return
    await send({"type": "http.response.body", "body": body})
