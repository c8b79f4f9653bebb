from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from codexpool_admin_api.config import Settings
from codexpool_admin_api.deps import State
from codexpool_shared.errors import install_error_handlers
from codexpool_shared.keys import Keys
from codexpool_shared.probes import ReadinessCheck, probe_router
from codexpool_shared.redis import create_redis


def create_app(settings: Settings) -> FastAPI:
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with AsyncExitStack() as stack:
            redis = create_redis(settings)
            stack.push_async_callback(redis.aclose)
            yield State(
                settings=settings,
                keys=Keys(settings.namespace),
                redis=redis,
                registry=registry,
            )

    app = FastAPI(title="codexpool-admin-api", lifespan=lifespan)
    install_error_handlers(app)

    def checks(request: Request) -> Mapping[str, ReadinessCheck]:
        redis: Redis = request.state.redis
        return {"redis": redis.ping}

    app.include_router(probe_router(registry, checks))
    return app
