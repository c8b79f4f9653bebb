"""What a relay sends the client, and when: the first bytes at once, the last with the end."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import aiohttp
import orjson
from aiohttp.base_protocol import BaseProtocol

from codexpool_router.attempt import Result
from codexpool_router.inbound import parse_body
from codexpool_router.outcome import AttemptSpan, Ledger
from codexpool_router.relay import deliver
from codexpool_router.shutdown import InFlight
from codexpool_router.sse import SseTap
from codexpool_shared.store.selection import Candidate, Selection
from tests.unit.router.test_ledger import FakeCore
from tests.unit.router.test_wire import event

CREATED = event("response.created", response={"id": "resp_1"})
DELTA = event("response.output_text.delta", delta="Hello")
COMPLETED = event("response.completed", response={"id": "resp_1", "output": [{"x": 1}]})


class Upstream:
    """An upstream stream being read: an aiohttp ``StreamReader`` fed by the test."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        protocol = BaseProtocol(loop)
        protocol.connection_made(asyncio.Transport())  # a reader waits only while connected
        self.content = aiohttp.StreamReader(protocol, 2**16, loop=loop)
        self.released = False

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        pass


class Writer:
    """The live-state writer, noting into ``log`` when a probe's verdict is stored."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def success(self, name: str, probe: bool) -> asyncio.Future[None]:
        self.log.append(f"verdict {name}")
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def relay(upstream: Upstream, first: bytes, *, probe: bool = False) -> list[str]:
    """Run ``deliver`` on ``upstream`` whose first chunk was ``first``; what happened, in order:
    each body message as ``body <bytes> <more_body>``, and the probe's verdict."""
    log: list[str] = []
    core = FakeCore()
    cast(Any, core).writer = Writer(log)
    ledger = Ledger(cast(Any, core), "v1", "req_1")
    candidate = Candidate("account-1", "acct", "env", None, 1, probe, 0)
    inbound = parse_body(orjson.dumps({"model": "m", "stream": True}), None)
    ledger.routed(Selection("agent", "round-robin", 1, 1, (candidate,), 0, 0, 0), inbound)
    tap = SseTap(collect=True)
    result = Result(
        "success", 200, time.perf_counter(), 0.001, response=cast(Any, upstream),
        first_chunk=first, tap=tap,
    )  # fmt: skip
    ledger.attempt(candidate, result, AttemptSpan("POST codex/responses", {}))

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            log.append(f"body {message['body']!r} {message['more_body']}")

    task = asyncio.current_task()
    assert task is not None
    await deliver(cast(Any, core), send, ledger, inbound, candidate, result, InFlight(task))
    assert ledger.final_outcome == "success"
    return log


async def test_a_stream_that_ended_with_its_first_chunk_is_answered_in_one_write() -> None:
    upstream = Upstream()
    upstream.content.feed_eof()
    log = await relay(upstream, CREATED + DELTA + COMPLETED)
    assert log == [f"body {CREATED + DELTA + COMPLETED!r} False"]
    assert upstream.released


async def test_the_first_chunk_leaves_before_the_rest_arrives_and_the_last_with_the_end() -> None:
    upstream = Upstream()
    relaying = asyncio.create_task(relay(upstream, CREATED))
    await asyncio.sleep(0.01)
    assert not relaying.done()
    upstream.content.feed_data(DELTA)
    await asyncio.sleep(0.01)
    upstream.content.feed_data(COMPLETED)
    upstream.content.feed_eof()
    assert await relaying == [
        f"body {CREATED!r} True",
        f"body {DELTA!r} True",
        f"body {COMPLETED!r} False",
    ]


async def test_a_probe_verdict_is_stored_before_the_answer_ends() -> None:
    upstream = Upstream()
    upstream.content.feed_eof()
    log = await relay(upstream, CREATED + COMPLETED, probe=True)
    assert log == ["verdict account-1", f"body {CREATED + COMPLETED!r} False"]
