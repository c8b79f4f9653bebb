"""Access tokens: decryption (cached), and the router's side of the single-flight refresh.

The refresh protocol (lock, adopt, compare-and-set, needs_reauth) is
``codexpool_shared.store.TokenRefresher`` and the exchange ``codexpool_shared.oauth``; the
router supplies its aiohttp session (the client it measured on the hot path), its settings and
its metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import aiohttp
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.metrics import Metrics
from codexpool_shared.crypto import DecryptionError, Keyring
from codexpool_shared.errors import ApiError
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.oauth import AiohttpTransport, TokenExchange
from codexpool_shared.store import TokenRefresher

_CACHE_MAX = 4096


def secret_key_mismatch() -> ApiError:
    """The answer when a stored credential does not decrypt: a deployment fault, not a
    provider's (every replica and retry meets it until the key is fixed)."""
    return ApiError(
        503,
        "The router cannot decrypt the pool's credentials: its CODEXPOOL_SECRET_KEY does not "
        "include the key they were stored with.",
        code="secret_key_mismatch",
        type="service_unavailable_error",
        headers={"x-should-retry": "false"},
    )


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
            try:
                token = self._keyring.decrypt(envelope, record=provider, field="access_token")
            except DecryptionError:
                raise secret_key_mismatch() from None
            self._cache[key] = token
        return token


def build_refresher(
    redis: Redis,
    keys: Keys,
    keyring: Keyring,
    session_for: Callable[[str], aiohttp.ClientSession],
    settings: Settings,
    metrics: Metrics,
    publish: Callable[[ProviderStatusChangedV1], None],
) -> TokenRefresher:
    """The router's token refresher: single-flight with every other process of the pool; each
    provider's exchange goes out through that provider's session (its egress proxy)."""
    exchange = TokenExchange(
        AiohttpTransport(session_for("")),
        settings.auth_base_url,
        settings.refresh_timeout_s,
        headers={"originator": settings.originator, "User-Agent": settings.user_agent},
        client_id=settings.oauth_client_id,
    )
    return TokenRefresher(
        redis,
        keys,
        keyring,
        exchange,
        lock_s=settings.refresh_lock_s,
        outcome=lambda label: metrics.refreshes.labels(label).inc(),
        publish=_noting_reauth(metrics, publish),
        actor="router",
        exchange_for=lambda name: replace(exchange, transport=AiohttpTransport(session_for(name))),
    )


def _noting_reauth(
    metrics: Metrics, publish: Callable[[ProviderStatusChangedV1], None]
) -> Callable[[ProviderStatusChangedV1], None]:
    """``publish``, after setting ``account_state`` of a provider the refresh found revoked."""

    def forward(event: ProviderStatusChangedV1) -> None:
        if event.dimension == "account" and event.current == "needs_reauth":
            metrics.account_state(event.provider, "needs_reauth")
        publish(event)

    return forward
