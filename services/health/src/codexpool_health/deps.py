from __future__ import annotations

from typing import Annotated, TypedDict, cast

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from codexpool_health.config import Settings
from codexpool_health.store import HealthStore
from codexpool_shared.keys import Keys


class State(TypedDict):
    """What the lifespan opens; routes reach it through the dependencies below."""

    settings: Settings
    keys: Keys
    redis: Redis
    registry: CollectorRegistry
    store: HealthStore


def _state(request: Request) -> State:
    return cast(State, request.state._state)


def _settings(request: Request) -> Settings:
    return _state(request)["settings"]


def _redis(request: Request) -> Redis:
    return _state(request)["redis"]


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[Redis, Depends(_redis)]
