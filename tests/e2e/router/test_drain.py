"""SIGTERM to a router with streams in flight: readiness fails at once, the streams finish (or,
past the drain timeout, end with a terminal ``response.failed``), every outcome is published,
and the process exits by itself (``codexpool_shared.drain``)."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from codexpool_shared.testing.processes import Service
from tests.e2e.conftest import EventTap, poll
from tests.e2e.router.conftest import Pool, Sim

WORDS = "one two three four five six seven eight"
FRAMES = 16
"""Events codex-sim streams for ``WORDS`` without reasoning: a stream lasts 15 event delays."""
EXIT_CODES = (0, -signal.SIGTERM)
"""uvicorn re-raises the SIGTERM it handled once it has shut down."""


@dataclass
class Stream:
    """One streamed request, read event by event; httpx raises on a broken chunked body."""

    request_id: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    duration_s: float = 0.0


async def stream(client: httpx.AsyncClient, into: Stream) -> None:
    body = {"model": "gpt-5-codex", "input": "hi", "stream": True}
    began = time.monotonic()
    async with client.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200
        into.request_id = response.headers["x-request-id"]
        buffer = ""
        async for text in response.aiter_text():
            buffer += text
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                data = [line[5:].strip() for line in block.splitlines() if line.startswith("data:")]
                into.events.append(orjson.loads("\n".join(data)))
                into.started.set()
        assert buffer == "", "the stream ended inside an event"
    into.duration_s = time.monotonic() - began


def slow_accounts(sim: Sim, delays_ms: list[int]) -> None:
    for n, delay in enumerate(delays_ms, start=1):
        sim.patch(n, event_delay_ms=delay, response_text=WORDS, reasoning=False)


def client_of(router: Service, pool: Pool) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=router.url,
        headers={"Authorization": f"Bearer {pool.api_key}"},
        timeout=httpx.Timeout(10, read=60),
    )


async def start_streams(
    client: httpx.AsyncClient, count: int
) -> tuple[list[asyncio.Task[None]], list[Stream]]:
    """``count`` streams, returned once each has delivered its first event."""
    streams = [Stream() for _ in range(count)]
    tasks = [asyncio.create_task(stream(client, s)) for s in streams]
    async with asyncio.timeout(30):
        await asyncio.gather(*(s.started.wait() for s in streams))
    return tasks, streams


async def readiness_fails_within(router: Service, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            async with httpx.AsyncClient(timeout=0.5) as probe:
                if (await probe.get(router.url + "/readyz")).status_code == 503:
                    return time.monotonic() - started
        except httpx.TransportError:  # the listener is closed: refused
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"/readyz still answered 200 {seconds} s after SIGTERM")


async def exited_within(router: Service, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while (code := router.process.poll()) is None:
        assert time.monotonic() < deadline, f"router still running {seconds} s later"
        await asyncio.sleep(0.05)
    return code


async def poll_sim_requests(sim: Sim, count: int) -> None:
    async def arrived() -> bool:
        return len(sim.requests()) >= count

    await poll(arrived, timeout_s=10)


def clean_exit(router: Service) -> None:
    log = router.log()
    assert "Traceback" not in log, log[-3000:]
    assert "timeout graceful shutdown exceeded" not in log, log[-3000:]


async def test_sigterm_lets_every_stream_finish_while_the_other_router_serves(
    sim: Sim, pool: Pool, routers, events: EventTap
) -> None:
    await pool.setup(sim, [1, 2, 3])
    # 15 gaps each: about 34 s, 9 s and 18 s per stream, longer than the 30 s services default.
    slow_accounts(sim, [2300, 600, 1200])
    leaving, staying = routers(2)
    async with client_of(leaving, pool) as client, client_of(staying, pool) as other:
        tasks, streams = await start_streams(client, 20)
        signalled = time.monotonic()
        leaving.process.send_signal(signal.SIGTERM)
        assert await readiness_fails_within(leaving, 1.0) < 1.0
        during = [Stream() for _ in range(3)]
        await asyncio.gather(*(stream(other, s) for s in during), *tasks)

    for s in [*streams, *during]:
        assert s.events[-1]["type"] == "response.completed", s.events[-1]
        assert len(s.events) == FRAMES
    assert max(s.duration_s for s in streams) > 30
    assert await exited_within(leaving, 10) in EXIT_CODES
    assert time.monotonic() - signalled < 600
    clean_exit(leaving)

    outcomes = await events.wait_for("request.outcome.v1", 23)
    by_id = {e["request_id"]: e for e in outcomes}
    assert {s.request_id for s in streams} <= set(by_id)
    assert {by_id[s.request_id]["final_outcome"] for s in streams} == {"success"}


async def test_streams_past_the_drain_timeout_end_with_a_terminal_event(
    sim: Sim, pool: Pool, routers, events: EventTap
) -> None:
    await pool.setup(sim, [1, 2, 3])
    slow_accounts(sim, [1300, 1300, 1300])  # about 20 s per stream
    [router] = routers(1, CODEXPOOL_DRAIN_TIMEOUT_S="3")
    async with client_of(router, pool) as client:
        tasks, streams = await start_streams(client, 20)
        # Non-streaming requests wait for the whole upstream stream: unanswered at the deadline.
        unanswered = [
            asyncio.create_task(
                client.post("/v1/responses", json={"model": "gpt-5-codex", "input": "hi"})
            )
            for _ in range(2)
        ]
        await poll_sim_requests(sim, 22)
        signalled = time.monotonic()
        router.process.send_signal(signal.SIGTERM)
        assert await readiness_fails_within(router, 1.0) < 1.0
        async with asyncio.timeout(15):
            await asyncio.gather(*tasks)
            answers = await asyncio.gather(*unanswered)
        ended = time.monotonic() - signalled
    assert 3 <= ended < 6, ended

    for s in streams:
        last = s.events[-1]
        assert last["type"] == "response.failed", last
        assert last["response"]["error"]["code"] == "server_shutting_down"
        assert all(e["type"] != "response.completed" for e in s.events)
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "server_shutting_down"
    assert await exited_within(router, 10) in EXIT_CODES
    clean_exit(router)

    outcomes = await events.wait_for("request.outcome.v1", 22)
    assert {e["final_outcome"] for e in outcomes} == {"shutdown"}
    by_id = {e["request_id"]: e for e in outcomes}
    for s in streams:
        assert [a["outcome"] for a in by_id[s.request_id]["attempts"]] == ["shutdown"]
    # Stopped before their answer started, the attempts are still in the event.
    for answer in answers:
        stopped = by_id[answer.headers["x-request-id"]]["attempts"]
        assert [(a["outcome"], a["status_code"]) for a in stopped] == [("shutdown", None)]
