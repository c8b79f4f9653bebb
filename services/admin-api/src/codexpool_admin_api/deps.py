from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from codexpool_admin_api.audit import Auditor
from codexpool_admin_api.auth import Authenticator, Principal, TokenStore
from codexpool_admin_api.config import Settings
from codexpool_admin_api.live_refresh import LiveRefresher
from codexpool_admin_api.metrics import Metrics
from codexpool_shared.crypto import Keyring
from codexpool_shared.errors import ApiError
from codexpool_shared.service import ServiceState, state_dependency


@dataclass(frozen=True, kw_only=True)
class State(ServiceState):
    """What the lifespan opens; routes reach it through the dependencies below."""

    settings: Settings
    keyring: Keyring
    http: httpx.AsyncClient
    tokens: TokenStore
    authenticator: Authenticator
    auditor: Auditor
    metrics: Metrics
    live_refresher: LiveRefresher


_state = state_dependency(State)
StateDep = Annotated[State, Depends(_state)]


def _settings(state: StateDep) -> Settings:
    return state.settings


def _keyring(state: StateDep) -> Keyring:
    return state.keyring


def _http(state: StateDep) -> httpx.AsyncClient:
    return state.http


def _tokens(state: StateDep) -> TokenStore:
    return state.tokens


def _auditor(state: StateDep) -> Auditor:
    return state.auditor


def _live_refresher(state: StateDep) -> LiveRefresher:
    return state.live_refresher


SettingsDep = Annotated[Settings, Depends(_settings)]
KeyringDep = Annotated[Keyring, Depends(_keyring)]
HttpDep = Annotated[httpx.AsyncClient, Depends(_http)]
TokenStoreDep = Annotated[TokenStore, Depends(_tokens)]
AuditorDep = Annotated[Auditor, Depends(_auditor)]
LiveRefresherDep = Annotated[LiveRefresher, Depends(_live_refresher)]

# auto_error=False: a missing token must go through the same path as a wrong one, so that
# it answers 401 in the shared error shape instead of FastAPI's own 403 body.
_bearer = HTTPBearer(auto_error=False, description="An admin or viewer token")


PRINCIPAL = "codexpool.principal"
"""Where ``AuthenticateFirst`` leaves the caller it authenticated, in the request's state."""


async def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    known = request.scope.get("state", {}).get(PRINCIPAL)
    if isinstance(known, Principal):
        return known
    client = request.client.host if request.client else "unknown"
    token = credentials.credentials if credentials else None
    return await _state(request).authenticator.authenticate(token, client)


def _admin(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if principal.role != "admin":
        raise ApiError(403, "this action needs the admin role", code="forbidden")
    return principal


ViewerDep = Annotated[Principal, Depends(_principal)]
"""Any authenticated caller (viewer or admin): reads."""

AdminDep = Annotated[Principal, Depends(_admin)]
"""An admin: every change, and every read that shows token or OAuth link details."""
