from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse

from codexpool_admin_api.api.errors import api_error
from codexpool_admin_api.api.routes import (
    activity,
    agents,
    audit,
    backup,
    forecast,
    oauth,
    pools,
    providers,
    replay,
    requests,
    tokens,
)
from codexpool_admin_api.audit import Auditor
from codexpool_admin_api.auth import Authenticator, TokenStore
from codexpool_admin_api.config import Settings
from codexpool_admin_api.deps import State
from codexpool_admin_api.live_refresh import live_refresher
from codexpool_admin_api.metrics import Metrics
from codexpool_admin_api.middleware import (
    AuthenticateFirst,
    BodyLimit,
    NoStore,
    store_unavailable,
)
from codexpool_shared import telemetry
from codexpool_shared.crypto import Keyring
from codexpool_shared.drain import Drain
from codexpool_shared.errors import ApiError, install_error_handlers
from codexpool_shared.messaging import Publisher
from codexpool_shared.probes import probe_router
from codexpool_shared.redis import UNAVAILABLE
from codexpool_shared.service import (
    api_options,
    decrypting_readiness,
    lifespan_state,
    open_infrastructure,
    service_registry,
    state_in,
)
from codexpool_shared.store.errors import StoreError

log = logging.getLogger("codexpool_admin_api")


MIN_ADMIN_TOKEN_LENGTH = 24


def _bootstrap_token(settings: Settings) -> str | None:
    # Checked here, not in a settings validator: pydantic's error would print the token.
    if settings.admin_token is None:
        return None
    token = settings.admin_token.get_secret_value()
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ValueError(
            f"CODEXPOOL_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters, or a "
            "short one could be guessed (make one: python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    return token


def _operation_id(route: APIRoute) -> str:
    # The handler's name: readable and stable, so clients generated from the document keep their
    # method names (tests/unit/admin_api/test_openapi.py pins the whole table).
    return route.name


def create_app(
    settings: Settings,
    *,
    publisher: Publisher | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    drain: Drain | None = None,
) -> FastAPI:
    """The admin API.

    Tests replace the RabbitMQ publisher with a fake, and may route the upstream and OAuth calls
    to an in-process codex-sim through ``upstream_transport``. ``drain`` is the process's
    (``serve`` makes it).
    """
    drain = drain or Drain(settings.drain_timeout_s)
    telemetry.configure("codexpool-admin-api")
    registry = service_registry()
    metrics = Metrics(registry)
    # Refuse to start without a usable key rather than fail on the first provider write.
    keyring = Keyring.from_settings(settings)
    bootstrap = _bootstrap_token(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[Mapping[str, object]]:
        async with AsyncExitStack() as stack:
            infra = await open_infrastructure(
                stack, settings, registry, name="codexpool-admin-api", publisher=publisher
            )
            redis, keys = infra.redis, infra.keys
            http = httpx.AsyncClient(
                timeout=settings.upstream_timeout_s,
                follow_redirects=False,
                transport=upstream_transport,
            )
            stack.push_async_callback(http.aclose)
            token_store = TokenStore(redis, keys)
            auditor = Auditor(redis, keys, max_entries=settings.audit_max_entries, metrics=metrics)
            refresher = live_refresher(
                redis,
                keys,
                keyring,
                http,
                settings,
                auditor=auditor,
                metrics=metrics,
                publish=infra.publisher.publish,
            )
            stack.push_async_callback(refresher.clients.close)
            yield lifespan_state(
                State(
                    settings=settings,
                    infra=infra,
                    keyring=keyring,
                    http=http,
                    tokens=token_store,
                    authenticator=Authenticator(
                        redis,
                        keys,
                        token_store,
                        bootstrap,
                        max_failures=settings.auth_failures_per_window,
                        window_s=settings.auth_failure_window_s,
                        metrics=metrics,
                    ),
                    auditor=auditor,
                    metrics=metrics,
                    live_refresher=refresher,
                )
            )

    app = FastAPI(
        title="codexpool-admin-api",
        summary="Providers, agents and pools of Codex Pool",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        **api_options(settings),
    )
    install_error_handlers(app)
    app.add_middleware(NoStore)
    app.add_middleware(
        AuthenticateFirst,
        authenticator=lambda scope: state_in(scope["state"], State).authenticator,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    telemetry.instrument_app(app)

    async def on_redis_error(_: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unavailable: %s", type(exc).__name__)
        return store_unavailable().response()

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return ApiError(500, "internal error", code="internal_error").response()

    async def on_store_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StoreError)
        return api_error(exc).response()

    app.add_exception_handler(StoreError, on_store_error)
    for unavailable in UNAVAILABLE:
        app.add_exception_handler(unavailable, on_redis_error)
    app.add_exception_handler(Exception, on_unexpected)

    app.include_router(probe_router(registry, decrypting_readiness(keyring), drain))
    for module in (
        providers,
        oauth,
        agents,
        pools,
        activity,
        forecast,
        replay,
        requests,
        backup,
        tokens,
        audit,
    ):
        app.include_router(module.router)
    app.include_router(tokens.me_router)
    return app
