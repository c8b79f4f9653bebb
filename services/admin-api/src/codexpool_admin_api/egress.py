"""The HTTP client that reaches each provider's upstream: this service's own, or one through
the provider's egress proxy (``codexpool_shared.store.egress``).

Refresh Live State reads a provider's ``/wham/usage`` and, when needed, refreshes its token; both
go out through the provider's proxy as the router's requests do. A proxied client is made the
first time a provider's proxy is met and kept per (provider, stored envelope), so a changed proxy
gets a new client; they are closed with the service. An HTTP(S) proxy gets the credentials as
``Proxy-Authorization``, a SOCKS5 one (``socks5://``, ``socks5h://``: httpx's socksio) by RFC 1929,
and it resolves the upstream's name itself, as the router's connector has it do.
"""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store.egress import EgressFields, parse_proxy, proxy_url
from codexpool_shared.store.replies import text


class ProxyClients:
    def __init__(self, redis: Redis, keys: Keys, keyring: Keyring, default: httpx.AsyncClient):
        self._redis = redis
        self._keys = keys
        self._keyring = keyring
        self._default = default
        self._clients: dict[tuple[str, str], httpx.AsyncClient] = {}
        self._current: dict[str, httpx.AsyncClient] = {}

    async def for_provider(self, name: str) -> httpx.AsyncClient:
        """The client for ``name`` as its record says now (raises ``DecryptionError``, or
        ``InvalidField`` for a stored URL that is no usable proxy, which the API never stores)."""
        raw = await self._redis.hget(self._keys.provider(name), EgressFields.PROXY_URL)
        if not raw:
            self._current.pop(name, None)
            return self._default
        envelope = text(raw)
        client = self._clients.get((name, envelope))
        if client is None:
            target = parse_proxy(proxy_url(self._keyring, name, envelope))
            proxy = httpx.Proxy(target.shown, auth=target.auth)
            client = httpx.AsyncClient(proxy=proxy, timeout=self._default.timeout)
            self._clients[(name, envelope)] = client
        self._current[name] = client
        return client

    def current(self, name: str) -> httpx.AsyncClient:
        """The client :meth:`for_provider` last gave for ``name`` (the token refresh's, which
        runs inside a refresh that looked it up first)."""
        return self._current.get(name, self._default)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        self._current.clear()
