"""The skeleton every service is built on: lifespan clients, typed state, dependencies.

What every lifespan opens (Redis, the event publisher, telemetry's last flush), the typed state
it yields, and the dependencies that read that state.

A lifespan yields ``lifespan_state(state)``; Starlette hands a copy of that mapping to every
request as ``scope["state"]`` (the ASGI lifespan-state extension), where
:func:`state_dependency` finds it again, typed, without touching Starlette's private
attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from redis.asyncio import Redis

from codexpool_shared import telemetry
from codexpool_shared.config import InfraSettings
from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import EventPublisher, Publisher
from codexpool_shared.probes import ReadinessCheck
from codexpool_shared.redis import open_redis
from codexpool_shared.store.credentials import check_secret_key

_KEY = "codexpool.service"
_PUBLISHER_CLOSE_S = 5.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Infrastructure:
    """The clients every service's lifespan opens, closed by the lifespan's exit stack."""

    redis: Redis
    keys: Keys
    publisher: Publisher
    registry: CollectorRegistry


@dataclass(frozen=True, kw_only=True)
class ServiceState:
    """What every service's lifespan yields; a service's own state subclasses it."""

    settings: InfraSettings
    infra: Infrastructure


def api_options(settings: InfraSettings) -> dict[str, Any]:
    """The FastAPI options every service's app takes (``FastAPI(title=..., **api_options(s))``).

    No trailing-slash redirects: Starlette builds their ``Location`` from the ``Host`` header.
    The OpenAPI document and ``/docs`` only where ``CODEXPOOL_API_DOCS`` asks for them.
    """
    return {
        "redirect_slashes": False,
        "docs_url": "/docs" if settings.api_docs else None,
        "redoc_url": None,
        "openapi_url": "/openapi.json" if settings.api_docs else None,
    }


def service_registry() -> CollectorRegistry:
    """A service's Prometheus registry, with the process and runtime metrics already on it.

    Each app builds its own registry (tests build many apps in one process), so the default
    registry's ``process_*``, ``python_info`` and ``python_gc_*`` collectors are added here,
    once per registry, for every service alike.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def lifespan_state(state: object) -> Mapping[str, object]:
    """What a lifespan yields so that :func:`state_dependency` finds ``state``."""
    return {_KEY: state}


def state_in(mapping: Mapping[str, object], kind: type[T]) -> T:
    """The state in what a lifespan yielded (or a request's copy of it), checked as a ``kind``."""
    state = mapping.get(_KEY)
    if not isinstance(state, kind):
        raise RuntimeError(f"no {kind.__name__} in the lifespan state: run the lifespan first")
    return state


def state_dependency(kind: type[T]) -> Callable[[Request], T]:
    """A dependency that returns the lifespan's state, checked to be a ``kind``."""

    def read(request: Request) -> T:
        return state_in(request.scope.get("state", {}), kind)

    return read


service_state = state_dependency(ServiceState)
"""The shared part of any service's state."""


def _redis(request: Request) -> Redis:
    return service_state(request).infra.redis


def _keys(request: Request) -> Keys:
    return service_state(request).infra.keys


def _publisher(request: Request) -> Publisher:
    return service_state(request).infra.publisher


RedisDep = Annotated[Redis, Depends(_redis)]
KeysDep = Annotated[Keys, Depends(_keys)]
PublisherDep = Annotated[Publisher, Depends(_publisher)]


def redis_readiness(request: Request) -> Mapping[str, ReadinessCheck]:
    """Readiness of a service whose one dependency is Redis (never RabbitMQ)."""
    return {"redis": service_state(request).infra.redis.ping}


def decrypting_readiness(keyring: Keyring) -> Callable[[Request], Mapping[str, ReadinessCheck]]:
    """Readiness of a service that decrypts stored credentials.

    Redis, and ``secret_key``, which fails (and says so) when ``keyring`` cannot decrypt what is
    stored.
    """

    def checks(request: Request) -> Mapping[str, ReadinessCheck]:
        infra = service_state(request).infra
        return {
            "redis": infra.redis.ping,
            "secret_key": lambda: check_secret_key(infra.redis, infra.keys, keyring),
        }

    return checks


async def open_infrastructure(
    stack: AsyncExitStack,
    settings: InfraSettings,
    registry: CollectorRegistry,
    *,
    name: str,
    publisher: Publisher | None = None,
    max_connections: int = 64,
) -> Infrastructure:
    """Open Redis and the event publisher on ``stack``, which closes them in reverse.

    The publisher starts even with RabbitMQ down (it buffers and reconnects). Telemetry's
    buffered spans and metrics are flushed last, after everything else has closed and logged.

    Args:
        stack: The lifespan's exit stack.
        settings: Where Redis and RabbitMQ are, and the namespace.
        registry: The service's Prometheus registry (the publisher's metrics go there).
        name: The service's name, for its AMQP connection.
        publisher: A publisher to use instead of RabbitMQ's (tests pass an in-memory one).
        max_connections: The size of the Redis connection pool.
    """
    stack.callback(telemetry.flush)
    redis = await open_redis(settings, max_connections=max_connections)
    stack.push_async_callback(redis.aclose)
    events = publisher or EventPublisher(
        str(settings.amqp_url), settings.namespace, registry=registry, name=name
    )
    await events.start()
    stack.push_async_callback(events.close, _PUBLISHER_CLOSE_S)
    return Infrastructure(
        redis=redis, keys=Keys(settings.namespace), publisher=events, registry=registry
    )
