"""Refresh Live State: read every pool member's quota from the upstream now, in parallel.

Each member gets its own deadline; one slow or failing account costs its own row an error
message, never the whole answer. Tokens are decrypted only in memory for the call and never
appear in an error message.
"""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis

from codexpool_admin_api.usage import UsageError, fetch_usage
from codexpool_shared.crypto import DecryptionError, Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store.errors import NotFound
from codexpool_shared.store.live import write_quota
from codexpool_shared.store.providers import read_credentials


class Refresher:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        keyring: Keyring,
        http: httpx.AsyncClient,
        *,
        upstream_base_url: str,
        timeout_s: float,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._keyring = keyring
        self._http = http
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

    async def _refresh(self, provider: str) -> None:
        creds = await read_credentials(self._redis, self._keys, provider)
        if creds.status == "disabled":
            raise UsageError("provider is disabled")
        token = self._keyring.decrypt(creds.access_token, record=provider, field="access_token")
        snapshot = await fetch_usage(self._http, self._base, token, creds.account_id)
        await write_quota(self._redis, self._keys, provider, snapshot)
