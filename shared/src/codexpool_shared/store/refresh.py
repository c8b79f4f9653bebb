"""Single-flight OAuth token refresh across processes (docs/SPEC.md sections 4 and 8).

Refresh tokens are single-use (protocol 2.2): exactly one process may spend one. Within a
process, concurrent callers share one task per provider. Across processes,
``Keys.refresh_lock(provider)`` (SET NX PX) elects the refresher; it re-reads the stored
credential under the lock, and if ``credential_version`` moved another process has already
refreshed: the new token is used. Otherwise it spends the refresh token through the caller's
``exchange`` and writes the rotated tokens back with a compare-and-set on the version. Losers
poll the version until a deadline. A permanent refusal marks the provider ``needs_reauth`` and
publishes ``provider.status_changed.v1``.

The HTTP call itself is the caller's (the router uses aiohttp, the admin API httpx), so every
service shares this one protocol.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.store.credentials import read_credentials, write_tokens
from codexpool_shared.store.providers import set_provider_status

log = logging.getLogger(__name__)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

PERMANENT = frozenset(
    {
        "refresh_token_expired",
        "refresh_token_reused",
        "refresh_token_invalidated",
        "invalid_grant",
        "token_invalidated",
        "token_expired",
        "app_session_terminated",
        "account_session_expired",
    }
)
"""codex-lb's list of refresh failures that only a new login can fix (protocol 2.4)."""

_POLL_S = 0.05

CODEX_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
"""The Codex CLI's public OAuth client id (docs/reference/codex-backend-protocol.md section 2)."""

Exchange = Callable[[str], Awaitable[tuple[int, dict[str, Any] | None]]]
"""POSTs the ``refresh_token`` grant to ``<auth>/oauth/token``: the HTTP status and JSON body."""


def refresh_grant(refresh_token: str, client_id: str = CODEX_CLIENT_ID) -> dict[str, str]:
    """The JSON body of a ``refresh_token`` grant, whichever HTTP client sends it."""
    return {"client_id": client_id, "grant_type": "refresh_token", "refresh_token": refresh_token}


def error_code(doc: Any) -> str | None:
    """The error code of an OAuth error answer, whichever of its shapes it takes.

    Args:
        doc: The decoded JSON body of the answer (anything).

    Returns:
        ``error.code`` (or ``error.type``), a string ``error``, or a top-level ``code``.
    """
    if not isinstance(doc, dict):
        return None
    error = doc.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return str(code) if code else None
    if isinstance(error, str):
        return error
    code = doc.get("code")
    return str(code) if code else None


class TokenRefresher:
    """Refreshes providers' access tokens, one refresh per refresh-token version pool-wide.

    Args:
        redis: The pool store.
        keys: Key names of the namespace.
        keyring: Decrypts the stored tokens (``write_tokens`` encrypts the new ones).
        exchange: Spends a refresh token: POSTs the grant, returns ``(status, json_or_None)``.
        lock_s: Lifetime of the refresh lock, and how long a loser waits for the winner.
        outcome: Called with ``refreshed``, ``adopted``, ``refused``, ``failed`` or ``timeout``.
        publish: Publishes the ``provider.status_changed.v1`` of a permanent refusal.
        actor: The ``actor`` of those events (``router``, ``admin-api``).
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        keyring: Keyring,
        exchange: Exchange,
        *,
        lock_s: float,
        outcome: Callable[[str], None],
        publish: Callable[[ProviderStatusChangedV1], None],
        actor: str,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._keyring = keyring
        self._exchange_call = exchange
        self._lock_s = lock_s
        self._outcome = outcome
        self._publish = publish
        self._actor = actor
        self._release = redis.register_script(_RELEASE)
        self._inflight: dict[str, asyncio.Task[str | None]] = {}
        self._proactive: dict[str, float] = {}

    async def refresh(self, provider: str, seen_version: int) -> str | None:
        """A fresh access token for ``provider`` newer than ``seen_version``.

        Concurrent callers in this process share one refresh task per provider.

        Args:
            provider: The provider's name.
            seen_version: The ``credential_version`` whose access token failed or expired.

        Returns:
            The new access token (refreshed here or adopted from another process), or ``None``
            when there is none: refused, failed, or the lock wait timed out.
        """
        task = self._inflight.get(provider)
        if task is None:
            task = asyncio.create_task(self._refresh(provider, seen_version))
            self._inflight[provider] = task
            task.add_done_callback(lambda _: self._inflight.pop(provider, None))
        return await asyncio.shield(task)

    def refresh_soon(self, provider: str, seen_version: int) -> None:
        """Refresh ahead of expiry in the background (the current token still works).

        At most once a minute per provider and process: when the issuer's tokens live shorter
        than the refresh window, refreshing on every request would only burn refresh tokens.

        Args:
            provider: The provider's name.
            seen_version: The ``credential_version`` whose access token is about to expire.
        """
        now = time.monotonic()
        last = self._proactive.get(provider)
        if provider in self._inflight or (last is not None and now - last < 60.0):
            return
        self._proactive[provider] = now
        task = asyncio.create_task(self._refresh(provider, seen_version))
        self._inflight[provider] = task
        task.add_done_callback(lambda _: self._inflight.pop(provider, None))

    async def _adopt(self, provider: str, seen_version: int) -> tuple[bool, str | None]:
        creds = await read_credentials(self._redis, self._keys, provider)
        if creds.credential_version == seen_version:
            # Refused (needs_reauth) or disabled: this refresh token is not to be spent again.
            return creds.status != "active", None
        if creds.status != "active" or not creds.access_token:
            return True, None
        self._outcome("adopted")
        token = self._keyring.decrypt(creds.access_token, record=provider, field="access_token")
        return True, token

    async def _refresh(self, provider: str, seen_version: int) -> str | None:
        lock = self._keys.refresh_lock(provider)
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + self._lock_s
        try:
            while True:
                done, token = await self._adopt(provider, seen_version)
                if done:
                    return token
                lock_ms = int(self._lock_s * 1000)
                if await self._redis.set(lock, owner, nx=True, px=lock_ms):
                    break
                if time.monotonic() > deadline:
                    self._outcome("timeout")
                    return None
                await asyncio.sleep(_POLL_S)
            try:
                done, token = await self._adopt(provider, seen_version)
                if done:
                    return token
                return await self._exchange(provider, seen_version)
            finally:
                await self._release(keys=[lock], args=[owner])
        except Exception:
            self._outcome("failed")
            log.warning("token refresh of %s failed", provider, exc_info=True)
            return None

    async def _exchange(self, provider: str, seen_version: int) -> str | None:
        creds = await read_credentials(self._redis, self._keys, provider)
        if not creds.refresh_token:
            await self._refused(provider, seen_version, "no_refresh_token")
            return None
        refresh_token = self._keyring.decrypt(
            creds.refresh_token, record=provider, field="refresh_token"
        )
        status, doc = await self._exchange_call(refresh_token)
        if status == 200 and isinstance(doc, dict) and isinstance(doc.get("access_token"), str):
            version = await write_tokens(
                self._redis,
                self._keys,
                self._keyring,
                provider,
                expected_version=seen_version,
                tokens={k: doc.get(k) for k in ("access_token", "refresh_token", "id_token")},
            )
            self._outcome("refreshed")
            if version is None:
                return (await self._adopt(provider, seen_version))[1]
            return str(doc["access_token"])
        code = error_code(doc)
        if status == 401 or code in PERMANENT:
            await self._refused(provider, seen_version, code or f"http_{status}")
            return None
        self._outcome("failed")
        return None

    async def _refused(self, provider: str, seen_version: int, reason: str) -> None:
        self._outcome("refused")
        previous = await set_provider_status(
            self._redis, self._keys, provider, "needs_reauth", expected_version=seen_version
        )
        if previous is not None and previous != "needs_reauth":
            self._publish(
                ProviderStatusChangedV1(
                    provider=provider,
                    dimension="account",
                    previous=previous,
                    current="needs_reauth",
                    reason=reason,
                    actor=self._actor,
                )
            )
