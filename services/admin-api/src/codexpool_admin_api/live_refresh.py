"""Refresh Live State: read every pool member's quota from the upstream now, in parallel.

Each member gets its own deadline; one slow or failing account costs its own row an error
message, never the whole answer. Tokens are decrypted only in memory for the call and never
appear in an error message.

A member whose access token is expired or about to expire has it refreshed first, and a usage
answer of 401 is retried once after a refresh. Refreshing goes through
``codexpool_shared.store.TokenRefresher``: single-flight with the routers' refreshes, so a
refresh token is spent once pool-wide.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from codexpool_admin_api.usage import TokenRejected, UsageError, fetch_usage
from codexpool_shared.crypto import DecryptionError, Keyring
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.store import (
    Exchange,
    StoredCredentials,
    TokenRefresher,
    read_credentials,
    refresh_grant,
)
from codexpool_shared.store.errors import NotFound
from codexpool_shared.store.live import write_quota

REFRESH_AHEAD_S = 60
"""An access token expiring within this is refreshed before the usage call."""

REFRESH_LOCK_S = 15.0
"""Lifetime of the pool-wide refresh lock (the router's default)."""


def httpx_exchange(http: httpx.AsyncClient, auth_base_url: str, timeout_s: float) -> Exchange:
    """POSTs the refresh_token grant to ``<auth>/oauth/token`` with httpx."""
    url = auth_base_url.rstrip("/") + "/oauth/token"
    headers = {"originator": "codex_cli_rs", "User-Agent": "codexpool-admin-api"}

    async def exchange(refresh_token: str) -> tuple[int, dict[str, Any] | None]:
        body = refresh_grant(refresh_token)
        response = await http.post(url, json=body, headers=headers, timeout=timeout_s)
        try:
            doc = response.json() if response.content else None
        except ValueError:
            doc = None
        return response.status_code, doc if isinstance(doc, dict) else None

    return exchange


def token_refresher(
    redis: Redis,
    keys: Keys,
    keyring: Keyring,
    http: httpx.AsyncClient,
    *,
    auth_base_url: str,
    timeout_s: float,
    outcome: Callable[[str], None],
    publish: Callable[[ProviderStatusChangedV1], None],
) -> TokenRefresher:
    """The admin API's token refresher (one per process, shared by all requests)."""
    return TokenRefresher(
        redis,
        keys,
        keyring,
        httpx_exchange(http, auth_base_url, timeout_s),
        lock_s=REFRESH_LOCK_S,
        outcome=outcome,
        publish=publish,
        actor="admin-api",
    )


class Refresher:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        keyring: Keyring,
        http: httpx.AsyncClient,
        tokens: TokenRefresher,
        *,
        upstream_base_url: str,
        timeout_s: float,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._keyring = keyring
        self._http = http
        self._tokens = tokens
        self._base = upstream_base_url
        self._timeout_s = timeout_s

    async def refresh_all(self, providers: tuple[str, ...]) -> dict[str, str]:
        """Fetch and store each provider's quota; the errors of those that failed, by name."""
        results = await asyncio.gather(*(self._refresh_bounded(p) for p in providers))
        return {name: error for name, error in zip(providers, results, strict=True) if error}

    async def _refresh_bounded(self, provider: str) -> str | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._refresh(provider)
        except TimeoutError:
            return f"no answer within {self._timeout_s:g}s"
        except UsageError as exc:
            return str(exc)
        except NotFound:
            return "provider is not registered"
        except DecryptionError:
            return "stored credentials cannot be decrypted with the configured keys"
        return None

    async def _new_token(self, creds: StoredCredentials, why: str) -> str:
        if creds.status != "active":
            raise UsageError(f"{why}; the provider needs re-linking")
        token = await self._tokens.refresh(creds.name, creds.credential_version)
        if token is None:
            raise UsageError(f"{why}, and the token refresh failed (see the provider's status)")
        return token

    async def _refresh(self, provider: str) -> None:
        creds = await read_credentials(self._redis, self._keys, provider)
        if creds.status == "disabled":
            raise UsageError("provider is disabled")
        expires = creds.access_expires_at
        refreshed = expires is not None and expires - time.time() <= REFRESH_AHEAD_S
        if refreshed:
            token = await self._new_token(creds, "the access token expired")
        else:
            token = self._keyring.decrypt(creds.access_token, record=provider, field="access_token")
        try:
            snapshot = await fetch_usage(self._http, self._base, token, creds.account_id)
        except TokenRejected as exc:
            if refreshed:
                raise
            token = await self._new_token(creds, str(exc))
            snapshot = await fetch_usage(self._http, self._base, token, creds.account_id)
        await write_quota(self._redis, self._keys, provider, snapshot)
