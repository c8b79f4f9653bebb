"""The command line every service shares: ``codexpool-<service> --host H --port P``."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable, Sequence

import uvicorn
from fastapi import FastAPI

from codexpool_shared import telemetry


def serve(
    prog: str,
    default_port: int,
    build_app: Callable[[], FastAPI],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse ``--host``/``--port`` and serve the app that ``build_app`` makes."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args(argv)
    app = build_app()
    # After build_app: the app factory's telemetry.configure() names the service in every line.
    telemetry.configure_logging()
    # Modules, schemas and the app are built now and live as long as the process. Moving them
    # out of the collector's reach keeps full collections small: without this, one took
    # 30-90 ms in the router, a stall every request in flight paid for.
    gc.freeze()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
