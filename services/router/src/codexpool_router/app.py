from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI, Request
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from codexpool_router.config import Settings
from codexpool_router.core import Core, build_core
from codexpool_router.deps import State
from codexpool_router.metrics import Metrics
from codexpool_router.pool_info import info_router
from codexpool_router.proxy import ResponsesEndpoint
from codexpool_shared import telemetry
from codexpool_shared.crypto import Keyring
from codexpool_shared.drain import Drain
from codexpool_shared.errors import ApiError, install_error_handlers
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import EventPublisher, Publisher
from codexpool_shared.probes import ReadinessCheck, probe_router
from codexpool_shared.redis import create_redis
from codexpool_shared.telemetry import TracedRoute


class RequestIdMiddleware:
    """Gives every answer FastAPI makes an ``x-request-id`` and the pool headers (the hot
    routes' handler stamps its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ("req_" + secrets.token_hex(12)).encode()

        async def stamped(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id),
                    (b"x-codexpool-provider", b"none"),
                    (b"x-codexpool-attempts", b"0"),
                ]
            await send(message)

        await self.app(scope, receive, stamped)


class RouterApp(FastAPI):
    """FastAPI, except that ``POST`` to a hot route goes straight to its traced handler.

    Each FastAPI and Starlette middleware layer wraps every ``send`` of a streamed answer; on
    the two responses routes that cost more CPU than the routing itself. Other methods on those
    paths still reach FastAPI, which answers 405.
    """

    def __init__(self, hot: Mapping[str, TracedRoute], **options: Any) -> None:
        super().__init__(**options)
        self.hot = dict(hot)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.hot.get(scope["path"])
            if route is not None:
                await route(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings, *, publisher: Publisher | None = None, drain: Drain | None = None
) -> FastAPI:
    """The router; ``drain`` is the process's (``serve`` makes it), ``publisher`` a test's fake."""
    drain = drain or Drain(settings.drain_timeout_s)
    keyring = Keyring.from_settings(settings)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    current: list[Core] = []

    def core() -> Core:
        if not current:
            raise ApiError(503, "The router is starting.", code="starting")
        return current[0]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:
            stack.callback(telemetry.flush)
            redis = create_redis(settings, max_connections=512)
            stack.push_async_callback(redis.aclose)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
                raise_for_status=False,
            )
            stack.push_async_callback(session.close)
            # The router makes its own CLIENT span per attempt (provider, attempt, outcome);
            # the generic aiohttp span would duplicate it and cost time on every request.
            AioHttpClientInstrumentor.uninstrument_session(session)
            events = publisher or EventPublisher(
                str(settings.amqp_url),
                settings.namespace,
                registry=registry,
                name="codexpool-router",
            )
            await events.start()
            stack.push_async_callback(events.close, 5.0)
            keys = Keys(settings.namespace)
            built = build_core(settings, keys, redis, keyring, session, events, metrics)
            built.writer.start()
            stack.push_async_callback(built.writer.close)
            current.append(built)
            stack.callback(current.clear)
            yield State(settings=settings, keys=keys, redis=redis, registry=registry)

    endpoints = {
        path: ResponsesEndpoint(core, name, drain)
        for path, name in (("/v1/responses", "v1"), ("/backend-api/codex/responses", "codex"))
    }
    app = RouterApp(
        {path: TracedRoute(endpoint, path) for path, endpoint in endpoints.items()},
        title="codexpool-router",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    def checks(request: Request) -> Mapping[str, ReadinessCheck]:
        redis: Redis = request.state.redis
        return {"redis": redis.ping}

    app.include_router(probe_router(registry, checks, drain))
    app.include_router(info_router(core))
    for path, endpoint in endpoints.items():
        handler: Callable[..., Awaitable[None]] = endpoint
        app.router.routes.append(Route(path, handler, methods=["POST"]))
    app.add_middleware(RequestIdMiddleware)
    telemetry.configure("codexpool-router")
    telemetry.instrument_app(app)
    return app
