"""Single-flight OAuth token refresh across processes (docs/SPEC.md sections 4 and 8).

Refresh tokens are single-use (protocol 2.2): exactly one process may spend one. Within a
process, concurrent callers share one task per provider. Across processes,
``Keys.refresh_lock(provider)`` (SET NX PX) elects the refresher; it re-reads the stored
credential under the lock, and if ``credential_version`` moved another process has already
refreshed: the new token is used. Otherwise it spends the refresh token through
``codexpool_shared.oauth.TokenExchange`` and writes the rotated tokens back with a
compare-and-set on the version. Losers poll the version until a deadline. A permanent refusal
marks the provider ``needs_reauth`` and publishes ``provider.status_changed.v1``.

The lock's lifetime is ``TokenRefreshSettings.refresh_lock_s``, one setting for every service.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.oauth import Refreshed, Refused, TokenExchange
from codexpool_shared.store.credentials import read_credentials, write_tokens
from codexpool_shared.store.providers import set_provider_status

log = logging.getLogger(__name__)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_POLL_S = 0.05


class TokenRefresher:
    """Refreshes providers' access tokens, one refresh per refresh-token version pool-wide.

    Args:
        redis: The pool store.
        keys: Key names of the namespace.
        keyring: Decrypts the stored tokens (``write_tokens`` encrypts the new ones).
        exchange: Spends a refresh token at the issuer.
        lock_s: Lifetime of the refresh lock, and how long a loser waits for the winner
            (``TokenRefreshSettings.refresh_lock_s``).
        outcome: Called with ``refreshed``, ``adopted``, ``refused``, ``failed`` or ``timeout``.
        publish: Publishes the ``provider.status_changed.v1`` of a permanent refusal.
        actor: The ``actor`` of those events (``router``, ``admin-api``).
        exchange_for: The exchange for one provider, when providers reach the issuer
            differently (the router's per-provider egress proxy); default ``exchange``.

    Raises:
        ValueError: The exchange's deadline is not shorter than the lock's lifetime.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        keyring: Keyring,
        exchange: TokenExchange,
        *,
        lock_s: float,
        outcome: Callable[[str], None],
        publish: Callable[[ProviderStatusChangedV1], None],
        actor: str,
        exchange_for: Callable[[str], TokenExchange] | None = None,
    ) -> None:
        if exchange.timeout_s >= lock_s:
            raise ValueError(
                f"the token exchange's deadline ({exchange.timeout_s:g} s) must be shorter than "
                f"the refresh lock (CODEXPOOL_REFRESH_LOCK_S, {lock_s:g} s), or a lock that "
                "expires mid-exchange lets another process spend the same refresh token"
            )
        self._redis = redis
        self._keys = keys
        self._keyring = keyring
        self._exchange_call = exchange
        self._exchange_for = exchange_for
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
        exchange = self._exchange_for(provider) if self._exchange_for else self._exchange_call
        answer = await exchange(refresh_token)
        if isinstance(answer, Refreshed):
            version = await write_tokens(
                self._redis,
                self._keys,
                self._keyring,
                provider,
                expected_version=seen_version,
                tokens=answer.as_fields(),
            )
            self._outcome("refreshed")
            if version is None:
                return (await self._adopt(provider, seen_version))[1]
            return answer.access_token
        if isinstance(answer, Refused):
            await self._refused(provider, seen_version, answer.reason)
            return None
        self._outcome("failed")
        log.warning("token refresh of %s failed: %s", provider, answer.reason)
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
