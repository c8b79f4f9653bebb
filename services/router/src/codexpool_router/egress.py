"""Which HTTP session reaches each provider's upstream: the router's own, or its proxy's.

A provider with an egress proxy (``store/egress.py``) gets its own ``aiohttp.ClientSession``
(its own connection pool) whose requests all go through that proxy: responses, models, usage
reads and token refreshes, since each of them asks :meth:`Egress.session` for the provider it
is about. The hot path pays one dict lookup; the map is rebuilt off the request path every
``ROUTER_EGRESS_SYNC_S`` from the provider records (one pipelined read), so a change made
through the admin API reaches every replica within that interval.

An HTTP(S) proxy is aiohttp's own ``proxy=``; a SOCKS5 proxy (``socks5://``, ``socks5h://``) is
aiohttp-socks' ``ProxyConnector``, which hands the upstream's host name to the proxy (remote DNS)
and keeps its tunnels in the session's pool like direct connections. A proxy that does not
answer, refuses the credentials or cannot reach the upstream fails the attempt with a connection
error (aiohttp's ``ClientProxyConnectionError``; the SOCKS connector's own errors are turned into
it), which the router classifies like any other: that provider fails over and its health counts
it; the other providers' sessions are untouched. A session
replaced by a changed proxy is closed after the drain timeout, so streams on it finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import aiohttp_socks
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.metrics import Metrics
from codexpool_shared.crypto import DecryptionError, Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store.egress import (
    SOCKS_PORT,
    ProxyTarget,
    parse_proxy,
    proxy_url,
    read_proxies,
)
from codexpool_shared.store.errors import InvalidField

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
                    target = parse_proxy(proxy_url(self._keyring, name, envelope))
                except (DecryptionError, InvalidField):
                    # The deployment's key cannot read it (or it is no usable URL, which the
                    # admin API never stores). Going direct would defeat the
                    # operator's intent; a proxy that refuses (the discard port, closed) makes
                    # every attempt a connection failure, so the provider fails over.
                    target = _REFUSING
                    log.error("cannot read a provider's proxy URL", extra={"provider": name})
                self._sessions[name] = _proxied_session(target)
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


_REFUSING = ProxyTarget("http", "127.0.0.1", 9, None, None)
_KEEPALIVE_S = 30
"""Idle time of a pooled connection (or SOCKS tunnel); no cap on their number, as the router's
own session has it."""


class _SocksConnector(aiohttp_socks.ProxyConnector):
    """aiohttp-socks' connector whose failures are aiohttp's, so that the attempt, the quota
    poll and the token refresh classify a SOCKS proxy's failure as they do an HTTP proxy's."""

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        try:
            return await super().connect(req, traces, timeout)
        except aiohttp_socks.ProxyTimeoutError as exc:
            raise aiohttp.ConnectionTimeoutError("SOCKS proxy timed out") from exc
        except (aiohttp_socks.ProxyConnectionError, aiohttp_socks.ProxyError) as exc:
            # The message names the proxy's address only, never its credentials.
            failure = OSError(None, str(exc))
            raise aiohttp.ClientProxyConnectionError(req.connection_key, failure) from exc


def upstream_session(
    connector: aiohttp.BaseConnector,
    proxy: str | None = None,
    proxy_auth: aiohttp.BasicAuth | None = None,
) -> aiohttp.ClientSession:
    """A session for upstream attempts: no cookie jar, and no span of aiohttp's own.

    Every account's attempts share a session, so a cookie one account's answer set (Cloudflare's
    ``__cf_bm``, say) would go out with the next account's requests: the router keeps none, as
    it passes none of the client's (``upstream.py``). The router's attempt spans replace
    aiohttp's, which would cost time on every request.
    """
    session = aiohttp.ClientSession(
        connector=connector,
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        proxy=proxy,
        proxy_auth=proxy_auth,
    )
    AioHttpClientInstrumentor.uninstrument_session(session)
    return session


def _proxied_session(target: ProxyTarget) -> aiohttp.ClientSession:
    if target.socks:
        username, password = target.auth or (None, None)
        return upstream_session(
            _SocksConnector(
                host=target.host,
                port=target.port or SOCKS_PORT,
                proxy_type=aiohttp_socks.ProxyType.SOCKS5,
                username=username,
                password=password,
                rdns=True,
                limit=0,
                keepalive_timeout=_KEEPALIVE_S,
            )
        )
    return upstream_session(
        aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=_KEEPALIVE_S),
        proxy=target.shown,
        proxy_auth=aiohttp.BasicAuth(*target.auth) if target.auth else None,
    )
