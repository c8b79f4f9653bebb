"""Access tokens: decryption (cached) and single-flight refresh across replicas.

Refresh tokens are single-use (protocol 2.2): exactly one process may spend one. Within a
process, concurrent callers share one task per provider. Across processes,
``Keys.refresh_lock(provider)`` (SET NX PX) elects the refresher; it re-reads the stored
credential under the lock, and if ``credential_version`` moved on another replica has already
refreshed: the new token is used. Otherwise it refreshes and writes the rotated tokens back with
a compare-and-set on the version. Losers poll the version until a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.metrics import Metrics
from codexpool_shared.crypto import Keyring
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.store import read_credentials, set_provider_status, write_tokens

log = logging.getLogger(__name__)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# codex-lb's list of refresh failures that only a new login can fix (protocol 2.4).
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
_POLL_S = 0.05
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


def _error_code(doc: Any) -> str | None:
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


class Refresher:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        keyring: Keyring,
        session: aiohttp.ClientSession,
        settings: Settings,
        metrics: Metrics,
        publish: Callable[[ProviderStatusChangedV1], None],
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._keyring = keyring
        self._session = session
        self._settings = settings
        self._metrics = metrics
        self._publish = publish
        self._release = redis.register_script(_RELEASE)
        self._inflight: dict[str, asyncio.Task[str | None]] = {}
        self._proactive: dict[str, float] = {}
        self._url = settings.auth_base_url.rstrip("/") + "/oauth/token"

    async def refresh(self, provider: str, seen_version: int) -> str | None:
        """A fresh access token for ``provider`` newer than ``seen_version``, or ``None``."""
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
            return False, None
        if creds.status != "active" or not creds.access_token:
            return True, None
        self._metrics.refreshes.labels("adopted").inc()
        token = self._keyring.decrypt(creds.access_token, record=provider, field="access_token")
        return True, token

    async def _refresh(self, provider: str, seen_version: int) -> str | None:
        lock = self._keys.refresh_lock(provider)
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + self._settings.refresh_lock_s
        try:
            while True:
                done, token = await self._adopt(provider, seen_version)
                if done:
                    return token
                lock_ms = int(self._settings.refresh_lock_s * 1000)
                if await self._redis.set(lock, owner, nx=True, px=lock_ms):
                    break
                if time.monotonic() > deadline:
                    self._metrics.refreshes.labels("timeout").inc()
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
            self._metrics.refreshes.labels("failed").inc()
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
        body = {
            "client_id": self._settings.oauth_client_id,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        timeout = aiohttp.ClientTimeout(total=self._settings.refresh_timeout_s)
        headers = {"originator": self._settings.originator, "User-Agent": self._settings.user_agent}
        async with self._session.post(
            self._url, json=body, headers=headers, timeout=timeout
        ) as resp:
            doc = await resp.json(content_type=None) if resp.content_length != 0 else None
            status = resp.status
        if status == 200 and isinstance(doc, dict) and isinstance(doc.get("access_token"), str):
            version = await write_tokens(
                self._redis,
                self._keys,
                self._keyring,
                provider,
                expected_version=seen_version,
                tokens={k: doc.get(k) for k in ("access_token", "refresh_token", "id_token")},
            )
            self._metrics.refreshes.labels("refreshed").inc()
            if version is None:
                return (await self._adopt(provider, seen_version))[1]
            return str(doc["access_token"])
        code = _error_code(doc)
        if status == 401 or code in PERMANENT:
            await self._refused(provider, seen_version, code or f"http_{status}")
            return None
        self._metrics.refreshes.labels("failed").inc()
        return None

    async def _refused(self, provider: str, seen_version: int, reason: str) -> None:
        self._metrics.refreshes.labels("refused").inc()
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
                    actor="router",
                )
            )
