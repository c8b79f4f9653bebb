"""Access tokens: decryption (cached), and the router's side of the single-flight refresh.

The refresh protocol (lock, adopt, compare-and-set, needs_reauth) is
``codexpool_shared.store.TokenRefresher``; the router supplies its aiohttp exchange, its
settings and its metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.metrics import Metrics
from codexpool_shared.crypto import Keyring
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.store import Exchange, TokenRefresher, refresh_grant

_CACHE_MAX = 4096


class Tokens:
    """Decrypts access-token envelopes, remembering recent ones (AES-GCM per request adds up)."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._cache: dict[tuple[str, str], str] = {}

    def access_token(self, provider: str, envelope: str) -> str:
        key = (provider, envelope)
        token = self._cache.get(key)
        if token is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            token = self._keyring.decrypt(envelope, record=provider, field="access_token")
            self._cache[key] = token
        return token


def aiohttp_exchange(session: aiohttp.ClientSession, settings: Settings) -> Exchange:
    """POSTs the refresh_token grant to ``<auth>/oauth/token`` with aiohttp."""
    url = settings.auth_base_url.rstrip("/") + "/oauth/token"
    timeout = aiohttp.ClientTimeout(total=settings.refresh_timeout_s)
    headers = {"originator": settings.originator, "User-Agent": settings.user_agent}

    async def exchange(refresh_token: str) -> tuple[int, dict[str, Any] | None]:
        body = refresh_grant(refresh_token, settings.oauth_client_id)
        async with session.post(url, json=body, headers=headers, timeout=timeout) as resp:
            doc = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, doc if isinstance(doc, dict) else None

    return exchange


def build_refresher(
    redis: Redis,
    keys: Keys,
    keyring: Keyring,
    session: aiohttp.ClientSession,
    settings: Settings,
    metrics: Metrics,
    publish: Callable[[ProviderStatusChangedV1], None],
) -> TokenRefresher:
    """The router's token refresher: single-flight with every other process of the pool."""
    return TokenRefresher(
        redis,
        keys,
        keyring,
        aiohttp_exchange(session, settings),
        lock_s=settings.refresh_lock_s,
        outcome=lambda label: metrics.refreshes.labels(label).inc(),
        publish=publish,
        actor="router",
    )
