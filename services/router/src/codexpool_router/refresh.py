"""Access tokens: decryption (cached), and the router's side of the single-flight refresh.

The refresh protocol (lock, adopt, compare-and-set, needs_reauth) is
``codexpool_shared.store.TokenRefresher`` and the exchange ``codexpool_shared.oauth``; the
router supplies its aiohttp session (the client it measured on the hot path), its settings and
its metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import aiohttp
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.metrics import Metrics
from codexpool_shared.crypto import DecryptionError, Keyring
from codexpool_shared.errors import ApiError
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.oauth import AiohttpTransport, TokenExchange
from codexpool_shared.redis import STORE_FAILED
from codexpool_shared.store import TokenRefresher
from codexpool_shared.store.providers import ProviderFields
from codexpool_shared.store.selection import token_tag

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
    """Decrypted access tokens by provider and tag (``selection.token_tag``).

    The selection script reports each member's token tag, never the token: a tag seen before is
    answered from here (AES-GCM per request adds up); a new one, after a refresh or a re-link,
    is read from the store once (:meth:`load`). Every member of a selection is loaded in the
    background (:meth:`warm`), so a fail-open selection, made without the store, finds them.
    """

    def __init__(self, redis: Redis, keys: Keys, keyring: Keyring, timeout_s: float) -> None:
        self._redis = redis
        self._keys = keys
        self._keyring = keyring
        self._timeout_s = timeout_s
        self._cache: dict[tuple[str, str], str] = {}
        self._loading: dict[str, asyncio.Task[str | None]] = {}

    def access_token(self, provider: str, envelope: str) -> str:
        """Decrypt ``envelope``, the provider's encrypted access token."""
        key = (provider, token_tag(envelope))
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

    def __len__(self) -> int:
        return len(self._cache)

    def current(self, provider: str, tag: str) -> str | None:
        """The token with this tag, if this replica has decrypted it."""
        return self._cache.get((provider, tag))

    async def load(self, provider: str) -> str | None:
        """The provider's token as the store has it now; None without one or without a store
        (the attempt is then skipped). One read per provider at a time."""
        return await asyncio.shield(self._loading.get(provider) or self._start(provider))

    def warm(self, members: Sequence[Any]) -> None:
        """Load, in the background, the tokens of a selection's members (``Selection.members``)
        that this replica has not decrypted yet."""
        for row in members:
            if (row[0], row[2]) not in self._cache and row[0] not in self._loading:
                self._start(row[0])

    def _start(self, provider: str) -> asyncio.Task[str | None]:
        task = asyncio.create_task(self._read(provider), name="token-load")
        self._loading[provider] = task
        task.add_done_callback(lambda _: self._loading.pop(provider, None))
        return task

    async def _read(self, provider: str) -> str | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                envelope = await self._redis.hget(
                    self._keys.provider(provider), ProviderFields.ACCESS_TOKEN
                )
        except STORE_FAILED:
            return None
        if not envelope:
            return None
        return self.access_token(
            provider, envelope.decode() if isinstance(envelope, bytes) else envelope
        )


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
