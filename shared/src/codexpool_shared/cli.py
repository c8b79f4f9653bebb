"""The command line every service shares: ``codexpool-<service> --host H --port P``.

It also owns the drain on SIGTERM (``codexpool_shared.drain``): the first SIGTERM or SIGINT
fails readiness, closes the listener and lets requests in flight run for the service's
``drain_timeout_s``; a second one ends the drain at once (streams still end cleanly and events
are flushed); a third SIGINT is uvicorn's force exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import socket
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TypeVar

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE

from codexpool_shared import telemetry
from codexpool_shared.config import InfraSettings
from codexpool_shared.drain import Drain

GRACE_S = 5.0
"""uvicorn cancels what is still running this long after the drain's deadline, so the app's own
clean endings always come first."""

GC_THRESHOLD0 = 20_000
"""The collector's young-generation threshold in a served process (``serve``)."""

S = TypeVar("S", bound=InfraSettings)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with the signals routed through a :class:`Drain`."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        """Serve ``config``; signals begin (then end) ``drain``."""
        super().__init__(config)
        self.drain = drain
        self._signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until the drain is over."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler: uvicorn stops accepting and waits, the drain keeps its deadline."""
        # A signal handler runs between two bytecodes of whatever the loop was doing: the drain
        # is only touched from the loop itself.
        self._signals += 1
        loop = self._loop if self._loop is not None and not self._loop.is_closed() else None
        if self._signals == 1:
            if loop is not None:
                loop.call_soon_threadsafe(self.drain.begin)
            super().handle_exit(sig, frame)
        elif self._signals == 2 and loop is not None:
            loop.call_soon_threadsafe(self.drain.expire)
        else:
            super().handle_exit(sig, frame)


def serve(
    prog: str,
    default_port: int,
    settings: Callable[[], S],
    build_app: Callable[[S, Drain], ASGIApp],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse ``--host``/``--port``, build the settings and the app, and serve it until drained.

    Args:
        prog: The console script's name.
        default_port: The port without ``--port``.
        settings: Builds the service's settings (after the arguments parsed, so ``--help``
            needs no environment).
        build_app: Builds the app around those settings and the process's drain.
        argv: The arguments; the process's own by default.
    """
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args(argv)
    built = settings()
    drain = Drain(built.drain_timeout_s)
    app = build_app(built, drain)
    # After build_app: the app factory's telemetry.configure() names the service in every line.
    telemetry.configure_logging()
    # Modules, schemas and the app are built now and live as long as the process. Moving them
    # out of the collector's reach keeps full collections small: without this, one took
    # 30-90 ms in the router, a stall every request in flight paid for.
    gc.freeze()
    # A young-generation collection runs whenever live container objects grew by threshold0
    # since the last one; every request in flight holds a few hundred, so with the default
    # (700) the loaded router collected every few requests, promoted what was in flight and
    # ran a full collection (up to 55 ms) every few thousand requests: 6-10 % of its CPU in
    # the collector. With 20,000 it is under 1 %, one young collection (about 4 ms) per
    # thousand or so requests and no full one in a bench run; RSS unchanged (issue 18,
    # measured with gc.callbacks).
    gc.set_threshold(GC_THRESHOLD0)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=math.ceil(drain.timeout_s + GRACE_S),
        timeout_keep_alive=built.http_keepalive_s,
        # Without a listed proxy uvicorn believes no X-Forwarded-* header; its own default
        # would believe loopback, i.e. any process on the host or in the pod.
        proxy_headers=bool(built.forwarded_allow_ips),
        forwarded_allow_ips=built.forwarded_allow_ips or None,
    )
    server = DrainingServer(config, drain)
    # uvicorn re-raises a captured SIGINT once it has shut down; like uvicorn.run, end quietly.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
