"""The drain's state machine, the readiness it flips and the signals that drive it."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Mapping

import httpx
import uvicorn
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry

from codexpool_shared.cli import DrainingServer
from codexpool_shared.drain import Drain
from codexpool_shared.probes import ReadinessCheck, probe_router


class Item:
    def __init__(self) -> None:
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1


async def test_the_deadline_stops_what_is_still_tracked_once() -> None:
    drain = Drain(0.05)
    done, running = Item(), Item()
    drain.track(done)
    drain.track(running)
    assert not drain.draining
    drain.begin()
    drain.begin()
    assert drain.draining and not drain.expired
    drain.untrack(done)
    await asyncio.sleep(0.2)
    assert drain.expired
    assert (done.stops, running.stops) == (0, 1)
    drain.expire()
    assert running.stops == 1


async def test_expire_comes_before_the_deadline_and_disarms_it() -> None:
    drain = Drain(0.05)
    item = Item()
    drain.track(item)
    drain.begin()
    drain.expire()
    await asyncio.sleep(0.1)
    assert item.stops == 1


def test_something_tracked_after_the_deadline_is_stopped_at_once() -> None:
    drain = Drain(600)
    drain.expire()
    assert drain.draining and drain.expired
    late = Item()
    drain.track(late)
    assert late.stops == 1


def probe_app(drain: Drain) -> FastAPI:
    async def ok() -> None:
        return None

    def checks(_: Request) -> Mapping[str, ReadinessCheck]:
        return {"redis": ok}

    app = FastAPI()
    app.include_router(probe_router(CollectorRegistry(), checks, drain))
    return app


async def test_readiness_fails_as_soon_as_the_drain_begins_and_liveness_holds() -> None:
    drain = Drain(600)
    transport = httpx.ASGITransport(app=probe_app(drain))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["status"]) == (200, "ok")
        drain.begin()
        draining = await client.get("/readyz")
        assert (draining.status_code, draining.json()) == (503, {"status": "draining"})
        assert (await client.get("/livez")).status_code == 200


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_signals_begin_the_drain_then_end_it_then_force_the_exit() -> None:
    drain = Drain(600)
    app = probe_app(drain)

    @app.get("/hold")
    async def hold() -> dict[str, bool]:
        # A request in flight until the drain's deadline, as a stream would be.
        async with asyncio.timeout(10):
            while not drain.expired:
                await asyncio.sleep(0.01)
        return {"expired": True}

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = DrainingServer(config, drain)
    # Off the main thread uvicorn installs no signal handlers and re-raises nothing on exit;
    # the test calls handle_exit the way a signal would.
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    wait_until(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    answers: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: answers.append(httpx.get(f"http://127.0.0.1:{port}/hold", timeout=10)),
        daemon=True,
    )
    client.start()
    wait_until(lambda: bool(server.server_state.tasks))

    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit
    wait_until(lambda: drain.draining)
    assert not drain.expired
    server.handle_exit(signal.SIGTERM, None)
    wait_until(lambda: drain.expired)
    assert not server.force_exit
    client.join(10)
    assert [a.json() for a in answers] == [{"expired": True}]
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit
    serving.join(10)
    assert not serving.is_alive()
