from __future__ import annotations

from typing import Annotated, TypedDict, cast

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from codexpool_admin_api.audit import Auditor
from codexpool_admin_api.auth import Authenticator, Principal, TokenStore
from codexpool_admin_api.config import Settings
from codexpool_admin_api.metrics import Metrics
from codexpool_shared.crypto import Keyring
from codexpool_shared.errors import ApiError
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import Publisher
from codexpool_shared.store import TokenRefresher


class State(TypedDict):
    """What the lifespan opens; routes reach it through the dependencies below."""

    settings: Settings
    keys: Keys
    redis: Redis
    registry: CollectorRegistry
    keyring: Keyring
    http: httpx.AsyncClient
    tokens: TokenStore
    authenticator: Authenticator
    auditor: Auditor
    publisher: Publisher
    metrics: Metrics
    token_refresher: TokenRefresher


def _state(request: Request) -> State:
    return cast(State, request.state._state)


def _settings(request: Request) -> Settings:
    return _state(request)["settings"]


def _redis(request: Request) -> Redis:
    return _state(request)["redis"]


def _keys(request: Request) -> Keys:
    return _state(request)["keys"]


def _keyring(request: Request) -> Keyring:
    return _state(request)["keyring"]


def _http(request: Request) -> httpx.AsyncClient:
    return _state(request)["http"]


def _tokens(request: Request) -> TokenStore:
    return _state(request)["tokens"]


def _auditor(request: Request) -> Auditor:
    return _state(request)["auditor"]


def _publisher(request: Request) -> Publisher:
    return _state(request)["publisher"]


def _metrics(request: Request) -> Metrics:
    return _state(request)["metrics"]


def _token_refresher(request: Request) -> TokenRefresher:
    return _state(request)["token_refresher"]


SettingsDep = Annotated[Settings, Depends(_settings)]
RedisDep = Annotated[Redis, Depends(_redis)]
KeysDep = Annotated[Keys, Depends(_keys)]
KeyringDep = Annotated[Keyring, Depends(_keyring)]
HttpDep = Annotated[httpx.AsyncClient, Depends(_http)]
TokenStoreDep = Annotated[TokenStore, Depends(_tokens)]
AuditorDep = Annotated[Auditor, Depends(_auditor)]
PublisherDep = Annotated[Publisher, Depends(_publisher)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
TokenRefresherDep = Annotated[TokenRefresher, Depends(_token_refresher)]

# auto_error=False: a missing token must go through the same path as a wrong one, so that
# it answers 401 in the shared error shape instead of FastAPI's own 403 body.
_bearer = HTTPBearer(auto_error=False, description="An admin or viewer token")


async def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    client = request.client.host if request.client else "unknown"
    token = credentials.credentials if credentials else None
    return await _state(request)["authenticator"].authenticate(token, client)


def _admin(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if principal.role != "admin":
        raise ApiError(403, "this action needs the admin role", code="forbidden")
    return principal


ViewerDep = Annotated[Principal, Depends(_principal)]
"""Any authenticated caller (viewer or admin): reads."""

AdminDep = Annotated[Principal, Depends(_admin)]
"""An admin: every change, and every read that shows token or OAuth link details."""
