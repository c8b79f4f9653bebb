"""One upstream attempt, up to the point where the answer could reach the client.

A 200 stream is *open* once its first body chunk arrived within the time-to-first-byte budget
(a stall after the headers is still a failover). For a non-streaming client the whole stream
is read here, so even a stream cut is a failover: nothing has reached the client yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from codexpool_router.classify import Verdict, classify
from codexpool_router.sse import SseTap
from codexpool_shared.events import OutcomeClass


@dataclass(slots=True)
class Result:
    outcome: OutcomeClass
    status: int | None
    started: float
    ttfb_s: float | None = None
    error_code: str | None = None
    verdict: Verdict | None = None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    raw_headers: tuple[tuple[bytes, bytes], ...] = ()
    response: aiohttp.ClientResponse | None = None
    """An open 200 stream (streaming clients), to be relayed and released by the caller."""
    first_chunk: bytes = b""
    tap: SseTap | None = None


def _connection_outcome(exc: BaseException) -> tuple[OutcomeClass, str]:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", "upstream_timeout"
    return "connection_error", type(exc).__name__


async def run_attempt(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    budget_s: float,
    client_timeout: aiohttp.ClientTimeout,
    stream: bool,
    unary: bool = False,
) -> Result:
    """``unary``: a 200 answer is one JSON document (compaction), read whole into ``body``."""
    started = time.perf_counter()
    resp: aiohttp.ClientResponse | None = None
    try:
        async with asyncio.timeout(budget_s):
            resp = await session.post(url, data=body, headers=headers, timeout=client_timeout)
            if resp.status != 200:
                error_body = await resp.read()
                ttfb = time.perf_counter() - started
                answer = resp.headers
                resp.release()
                verdict = classify(resp.status, resp.headers, error_body, time.time())
                return Result(
                    verdict.outcome,
                    resp.status,
                    started,
                    ttfb,
                    verdict.error_code,
                    verdict,
                    error_body,
                    answer,
                )
            first = await resp.content.readany()
        ttfb = time.perf_counter() - started
        if not first:
            resp.close()
            return Result("stream_error", 200, started, ttfb, "empty_stream")
        if unary:
            body = first + await resp.content.read()
            resp.release()
            return Result(
                "success",
                200,
                started,
                ttfb,
                body=body,
                headers=resp.headers,
                raw_headers=resp.raw_headers,
            )
        tap = SseTap(collect=True)
        if stream:
            return Result(
                "success",
                200,
                started,
                ttfb,
                headers=resp.headers,
                raw_headers=resp.raw_headers,
                response=resp,
                first_chunk=first,
                tap=tap,
            )
        tap.feed(first)
        while chunk := await resp.content.readany():
            tap.feed(chunk)
        resp.release()
        outcome, code = tap.outcome()
        return Result(
            outcome,
            200,
            started,
            ttfb,
            code,
            headers=resp.headers,
            raw_headers=resp.raw_headers,
            tap=tap,
        )
    except (TimeoutError, aiohttp.ClientError) as exc:
        if resp is not None:
            resp.close()
        outcome, code = _connection_outcome(exc)
        return Result(outcome, resp.status if resp is not None else None, started, None, code)
    except ValueError:
        if resp is not None:
            resp.close()
            raise
        # aiohttp refuses to build the request (a header value with CR/LF, say): a fault of
        # this provider's attempt, so the request fails over instead of answering a bare 500.
        return Result("connection_error", None, started, None, "invalid_upstream_request")
    except BaseException:
        if resp is not None:
            resp.close()
        raise
