"""Which HTTP session reaches each provider's upstream: the router's own, or its proxy's.

A provider with an egress proxy (``store/egress.py``) gets its own ``aiohttp.ClientSession``
(its own connection pool) whose requests all go through that proxy: responses, models, usage
reads and token refreshes, since each of them asks :meth:`Egress.session` for the provider it
is about. The hot path pays one dict lookup; the map is rebuilt off the request path every
``ROUTER_EGRESS_SYNC_S`` from the provider records (one pipelined read), so a change made
through the admin API reaches every replica within that interval.

A proxy that does not answer fails the attempt with a connection error (aiohttp's
``ClientProxyConnectionError``), which the router classifies like any other: that provider
fails over and its health counts it; the other providers' sessions are untouched. A session
replaced by a changed proxy is closed after the drain timeout, so streams on it finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.metrics import Metrics
from codexpool_shared.crypto import DecryptionError, Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store.egress import proxy_url, read_proxies

log = logging.getLogger(__name__)


class Egress:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        keyring: Keyring,
        default: aiohttp.ClientSession,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._keyring = keyring
        self._default = default
        self._settings = settings
        self._metrics = metrics
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._envelopes: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._retiring: dict[asyncio.Task[None], aiohttp.ClientSession] = {}

    def session(self, provider: str) -> aiohttp.ClientSession:
        """The session for ``provider``'s upstream requests."""
        return self._sessions.get(provider, self._default)

    async def start(self) -> None:
        """Load the proxies now (a failure only delays them a sync), then keep them current."""
        with contextlib.suppress(Exception):
            await self.sync()
        self._task = asyncio.create_task(self._loop(), name="egress-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task, session in list(self._retiring.items()):
            task.cancel()
            await session.close()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.egress_sync_s)
            try:
                await self.sync()
            except Exception:
                self._metrics.background_errors.inc()
                log.warning("egress sync failed", exc_info=True)

    async def sync(self) -> None:
        """Rebuild the sessions of providers whose proxy was set, changed or removed."""
        envelopes = await read_proxies(self._redis, self._keys)
        for name in set(self._envelopes) | set(envelopes):
            envelope = envelopes.get(name)
            if envelope == self._envelopes.get(name):
                continue
            old = self._sessions.pop(name, None)
            self._envelopes.pop(name, None)
            if envelope is not None:
                try:
                    url = proxy_url(self._keyring, name, envelope)
                except DecryptionError:
                    # The deployment's key cannot read it. Going direct would defeat the
                    # operator's intent; a proxy that refuses (the discard port, closed) makes
                    # every attempt a connection failure, so the provider fails over.
                    url = "http://127.0.0.1:9"
                    log.error("cannot decrypt a provider's proxy URL", extra={"provider": name})
                self._sessions[name] = _proxied_session(url)
                self._envelopes[name] = envelope
            if old is not None:
                self._retire(old)

    def _retire(self, session: aiohttp.ClientSession) -> None:
        async def later() -> None:
            await asyncio.sleep(self._settings.drain_timeout_s)
            await session.close()

        task = asyncio.create_task(later())
        self._retiring[task] = session
        task.add_done_callback(lambda done: self._retiring.pop(done, None))


def _proxied_session(url: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
        raise_for_status=False,
        proxy=url,
    )
    # As for the router's own session: the router's attempt spans replace aiohttp's.
    AioHttpClientInstrumentor.uninstrument_session(session)
    return session
