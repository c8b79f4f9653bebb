"""Serving the sim with uvicorn: as a process, or inside a running event loop for tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn

from codexpool_sim.app import SimApp
from codexpool_sim.asgi import quiet_deliberate_cuts
from codexpool_sim.state import Sim


def uvicorn_config(app: SimApp, host: str, port: int, log_level: str = "warning") -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    # After Config, which may reconfigure uvicorn's loggers.
    quiet_deliberate_cuts()
    return config


@dataclass(frozen=True)
class RunningSim:
    base_url: str
    app: SimApp

    @property
    def sim(self) -> Sim:
        return self.app.sim


@asynccontextmanager
async def serve_in_background(
    app: SimApp, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSim]:
    """A real HTTP server for ``app`` on the current loop (port 0 picks a free one)."""
    server = uvicorn.Server(uvicorn_config(app, host, port))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("codex-sim server stopped during startup")
        await asyncio.sleep(0.005)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningSim(f"http://{host}:{bound}", app)
    finally:
        server.should_exit = True
        await task
