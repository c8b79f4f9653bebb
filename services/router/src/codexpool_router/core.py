"""What every request handler needs, opened and closed by the app's lifespan."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import aiohttp
from opentelemetry import trace
from redis.asyncio import Redis
from redis.exceptions import RedisError

from codexpool_router.answers import unavailable
from codexpool_router.config import Settings
from codexpool_router.livewriter import LiveWriter, now_ms
from codexpool_router.metrics import Metrics
from codexpool_router.refresh import Tokens, build_refresher
from codexpool_shared.crypto import Keyring
from codexpool_shared.errors import ApiError
from codexpool_shared.events import BaseEvent
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import Publisher
from codexpool_shared.store import TokenRefresher
from codexpool_shared.store.selection import NoPool, Selection, Selector, Unauthorized

tracer = trace.get_tracer("codexpool.router")


@dataclass(slots=True)
class Core:
    settings: Settings
    keys: Keys
    redis: Redis
    session: aiohttp.ClientSession
    selector: Selector
    tokens: Tokens
    refresher: TokenRefresher
    writer: LiveWriter
    publisher: Publisher
    metrics: Metrics
    responses_url: str
    client_timeout: aiohttp.ClientTimeout

    def publish(self, event: BaseEvent) -> None:
        # An event must never fail a request; the publisher counts its own drops.
        with contextlib.suppress(Exception):
            self.publisher.publish(event)

    async def select(self, key_digest: str, session_digest: str) -> Selection:
        """Authenticate and select, answering store trouble with a fast 503 (fail-fast).

        Fail-fast rather than serving a cached membership: a stale pool would keep sending
        traffic to a removed or quota-exhausted account, which is the one thing the pool
        promises not to do. The Redis client's short timeouts bound the cost.
        """
        try:
            return await self.selector.select(key_digest, now_ms(), session_digest)
        except Unauthorized:
            raise ApiError(401, "Incorrect agent key provided.", code="invalid_api_key") from None
        except NoPool as exc:
            raise unavailable(
                f"Agent {exc.agent_id!r} has no pool configured.", "no_pool", 0, 0
            ) from None
        except (RedisError, OSError, TimeoutError):
            self.metrics.store_errors.inc()
            raise ApiError(
                503,
                "The pool store is unreachable; try again shortly.",
                code="store_unavailable",
                type="service_unavailable_error",
            ) from None


def build_core(
    settings: Settings,
    keys: Keys,
    redis: Redis,
    keyring: Keyring,
    session: aiohttp.ClientSession,
    publisher: Publisher,
    metrics: Metrics,
) -> Core:
    writer = LiveWriter(redis, keys, settings, metrics)
    refresher = build_refresher(redis, keys, keyring, session, settings, metrics, publisher.publish)
    return Core(
        settings=settings,
        keys=keys,
        redis=redis,
        session=session,
        selector=Selector(redis, keys, settings),
        tokens=Tokens(keyring),
        refresher=refresher,
        writer=writer,
        publisher=publisher,
        metrics=metrics,
        responses_url=settings.upstream_base_url.rstrip("/") + "/codex/responses",
        client_timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout_s, sock_read=settings.idle_timeout_s
        ),
    )
