from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from codexpool_router.api.routes import models, responses, usage
from codexpool_router.config import Settings
from codexpool_router.core import build_core
from codexpool_router.deps import State
from codexpool_router.egress import upstream_session
from codexpool_router.metrics import Metrics
from codexpool_router.middleware import RequestIdMiddleware
from codexpool_router.quota_poll import QuotaPoller
from codexpool_shared import telemetry
from codexpool_shared.crypto import Keyring
from codexpool_shared.drain import Drain
from codexpool_shared.errors import install_error_handlers
from codexpool_shared.messaging import Publisher
from codexpool_shared.probes import probe_router
from codexpool_shared.service import (
    api_options,
    decrypting_readiness,
    lifespan_state,
    open_infrastructure,
    service_registry,
    state_in,
)
from codexpool_shared.telemetry import TracedRoute


class RouterApp:
    """The router's ASGI entry point: ``POST`` to a responses route goes straight to its traced
    handler, everything else (other methods, other routes, the lifespan) to ``api``.

    Each FastAPI and Starlette middleware layer wraps every ``send`` of a streamed answer; on
    the two responses routes that cost more CPU than the routing itself. The handlers are bound
    to the lifespan's Core once, when the lifespan has started, so a request pays neither the
    framework nor a dependency lookup.
    """

    def __init__(self, api: FastAPI, drain: Drain) -> None:
        self.api = api
        self._drain = drain
        self._hot: dict[str, TracedRoute] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "POST":
                route = self._hot.get(scope["path"])
                if route is not None:
                    await route(scope, receive, send)
                    return
        elif scope["type"] == "lifespan":
            send = self._binding(scope, send)
        await self.api(scope, receive, send)

    def _binding(self, scope: Scope, send: Send) -> Send:
        async def bind(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                # The lifespan put its state in the scope before saying it started.
                core = state_in(scope["state"], State).core
                self._hot = responses.hot_routes(core, self._drain)
            elif message["type"].startswith("lifespan.shutdown."):
                self._hot = {}
            await send(message)

        return bind


def create_app(
    settings: Settings, *, publisher: Publisher | None = None, drain: Drain | None = None
) -> RouterApp:
    """The router; ``drain`` is the process's (``serve`` makes it), ``publisher`` a test's fake."""
    drain = drain or Drain(settings.drain_timeout_s)
    # Refuse to start without a usable key rather than fail on the first request.
    keyring = Keyring.from_settings(settings)
    telemetry.configure("codexpool-router")
    registry = service_registry()
    metrics = Metrics(registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[Mapping[str, object]]:
        async with AsyncExitStack() as stack:
            infra = await open_infrastructure(
                stack,
                settings,
                registry,
                name="codexpool-router",
                publisher=publisher,
                max_connections=512,
            )
            session = upstream_session(
                aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
            )
            stack.push_async_callback(session.close)
            core = build_core(
                settings, infra.keys, infra.redis, keyring, session, infra.publisher, metrics
            )
            stack.push_async_callback(core.selector.aclose)
            core.writer.start()
            stack.push_async_callback(core.writer.close)
            core.leases.start()
            stack.push_async_callback(core.leases.close)
            await core.egress.start()
            stack.push_async_callback(core.egress.close)
            poller = QuotaPoller(
                infra.redis, infra.keys, settings, core.tokens, core.egress.session, metrics
            )
            poller.start()
            stack.push_async_callback(poller.close)
            yield lifespan_state(State(settings=settings, infra=infra, core=core))

    api = FastAPI(title="codexpool-router", lifespan=lifespan, **api_options(settings))
    install_error_handlers(api)
    api.include_router(probe_router(registry, decrypting_readiness(keyring), drain))
    for module in (responses, usage, models):
        api.include_router(module.router)
    api.add_middleware(RequestIdMiddleware)
    telemetry.instrument_app(api)
    return RouterApp(api, drain)
