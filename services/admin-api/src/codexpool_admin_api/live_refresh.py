"""Refresh Live State: read every pool member's quota from the upstream now, in parallel.

Each member gets its own deadline; one slow or failing account costs its own row an error
message, never the whole answer. Tokens are decrypted only in memory for the call and never
appear in an error message.

A member whose access token is expired or about to expire has it refreshed first, and a usage
answer of 401 is retried once after a refresh. Refreshing goes through
``codexpool_shared.store.TokenRefresher`` and the one exchange of ``codexpool_shared.oauth``
(on this service's httpx client): single-flight with the routers' refreshes, so a refresh token
is spent once pool-wide.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import httpx
from redis.asyncio import Redis

from codexpool_admin_api.audit import Auditor
from codexpool_admin_api.auth import Principal
from codexpool_admin_api.config import Settings
from codexpool_admin_api.egress import ProxyClients
from codexpool_admin_api.metrics import Metrics
from codexpool_admin_api.pool_activity import ActivityOut, pool_activity
from codexpool_admin_api.usage import TokenRejected, UsageError, fetch_usage
from codexpool_shared.crypto import DecryptionError, Keyring
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.oauth import HttpxTransport, TokenExchange
from codexpool_shared.store import StoredCredentials, TokenRefresher, read_credentials
from codexpool_shared.store.agents import get_agent
from codexpool_shared.store.errors import InvalidField, NotFound
from codexpool_shared.store.live import write_quota
from codexpool_shared.store.pools import get_pool

REFRESH_AHEAD_S = 60
"""An access token expiring within this is refreshed before the usage call."""

_EXCHANGE_HEADERS = {"originator": "codex_cli_rs", "User-Agent": "codexpool-admin-api"}


def live_refresher(
    redis: Redis,
    keys: Keys,
    keyring: Keyring,
    http: httpx.AsyncClient,
    settings: Settings,
    *,
    auditor: Auditor,
    metrics: Metrics,
    publish: Callable[[ProviderStatusChangedV1], None],
) -> LiveRefresher:
    """The process's Refresh Live State, with its token refresher (shared by all requests).

    Each provider's usage read and token refresh go through its egress proxy, if it has one.
    """
    clients = ProxyClients(redis, keys, keyring, http)
    exchange = TokenExchange(
        HttpxTransport(http),
        str(settings.auth_base_url),
        settings.upstream_timeout_s,
        headers=_EXCHANGE_HEADERS,
    )
    tokens = TokenRefresher(
        redis,
        keys,
        keyring,
        exchange,
        lock_s=settings.refresh_lock_s,
        outcome=lambda label: metrics.token_refreshes.labels(label).inc(),
        publish=publish,
        actor="admin-api",
        exchange_for=lambda name: replace(
            exchange, transport=HttpxTransport(clients.current(name))
        ),
    )
    return LiveRefresher(
        redis,
        keys,
        keyring,
        clients,
        tokens,
        upstream_base_url=str(settings.upstream_base_url),
        timeout_s=settings.upstream_timeout_s,
        auditor=auditor,
        metrics=metrics,
    )


class LiveRefresher:
    """Refresh Live State, built once in the lifespan: reads quotas, refreshing tokens first."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        keyring: Keyring,
        clients: ProxyClients,
        tokens: TokenRefresher,
        *,
        upstream_base_url: str,
        timeout_s: float,
        auditor: Auditor,
        metrics: Metrics,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._keyring = keyring
        self.clients = clients
        self._tokens = tokens
        self._base = upstream_base_url
        self._timeout_s = timeout_s
        self._auditor = auditor
        self._metrics = metrics

    async def refresh_pool(self, admin: Principal, agent_id: str) -> ActivityOut:
        """Read every member's quota now (audited), then the pool's activity with the errors."""
        await get_agent(self._redis, self._keys, agent_id)
        pool = await get_pool(self._redis, self._keys, agent_id)
        errors = await self.refresh_all(pool.providers)
        self._metrics.usage_refreshes.labels("error").inc(len(errors))
        self._metrics.usage_refreshes.labels("ok").inc(len(pool.providers) - len(errors))
        await self._auditor.record(admin, "pool.refresh", agent_id, after={"errors": errors})
        return await pool_activity(self._redis, self._keys, pool, admin=True, refresh_errors=errors)

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
        except InvalidField:
            return "the stored egress proxy URL is unusable; set it again"
        return None

    async def _new_token(self, creds: StoredCredentials, why: str) -> str:
        if creds.status != "active":
            raise UsageError(f"{why}; the provider needs re-linking")
        token = await self._tokens.refresh(creds.name, creds.credential_version)
        if token is None:
            raise UsageError(f"{why}, and the token refresh failed (see the provider's status)")
        return token

    async def _refresh(self, provider: str) -> None:
        http = await self.clients.for_provider(provider)
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
            snapshot = await fetch_usage(http, self._base, token, creds.account_id)
        except TokenRejected as exc:
            if refreshed:
                raise
            token = await self._new_token(creds, str(exc))
            snapshot = await fetch_usage(http, self._base, token, creds.account_id)
        await write_quota(self._redis, self._keys, provider, snapshot)
