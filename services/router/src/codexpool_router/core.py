"""What every request handler needs, opened and closed by the app's lifespan.

Both ways a request meets the pool authenticate the same way: the agent key's SHA-256
(``inbound.agent_key_digest``) is looked up at ``Keys.api_key``, and an unknown key, a missing
pool or an unreachable store is answered by :meth:`Core.refusal`. The responses routes do the
lookup inside the selection script (one round trip); the usage and models routes, which read
every member, in :meth:`Core.members`.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from opentelemetry import trace
from redis.asyncio import Redis
from redis.exceptions import RedisError

from codexpool_router.answers import unavailable
from codexpool_router.config import Settings
from codexpool_router.livewriter import LiveWriter, now_ms
from codexpool_router.metrics import Metrics
from codexpool_router.refresh import Tokens, build_refresher
from codexpool_router.retry_budget import RetryBudget
from codexpool_shared.crypto import Keyring
from codexpool_shared.errors import ApiError
from codexpool_shared.events import BaseEvent
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import Publisher
from codexpool_shared.store import (
    LiveState,
    NotFound,
    Provider,
    TokenRefresher,
    get_live,
    get_pool,
    get_provider,
)
from codexpool_shared.store.selection import NoPool, Selection, Selector, Unauthorized

tracer = trace.get_tracer("codexpool.router")

_REFUSED = (Unauthorized, NoPool, RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Members:
    """An agent's pool as the usage and models routes read it: every member, in pool order."""

    agent_id: str
    providers: list[Provider]
    lives: list[LiveState]
    """Each provider's live state, in the order of ``providers``."""


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
    retry_budget: RetryBudget
    attempts_in_flight: Counter[str] = field(default_factory=Counter)
    """Upstream attempts this replica is waiting on, per provider (``failover.py``)."""

    def publish(self, event: BaseEvent) -> None:
        # An event must never fail a request; the publisher counts its own drops.
        with contextlib.suppress(Exception):
            self.publisher.publish(event)

    async def select(self, key_digest: str, session_digest: str) -> Selection:
        """Authenticate and select in one round trip (``select.lua``).

        Store trouble is answered with a fast 503 (fail-fast) rather than a cached membership:
        a stale pool would keep sending traffic to a removed or quota-exhausted account, which
        is the one thing the pool promises not to do. The Redis client's short timeouts bound
        the cost.
        """
        try:
            return await self.selector.select(key_digest, now_ms(), session_digest)
        except _REFUSED as exc:
            raise self.refusal(exc) from None

    async def members(self, key_digest: str) -> Members:
        """Authenticate and read the agent's pool: each member's record and live state."""
        try:
            agent = await self.redis.get(self.keys.api_key(key_digest))
            if agent is None:
                raise Unauthorized()
            agent_id = agent.decode() if isinstance(agent, bytes) else str(agent)
            try:
                pool = await get_pool(self.redis, self.keys, agent_id)
            except NotFound:
                raise NoPool(agent_id) from None
            providers, lives = [], []
            for name in pool.providers:
                try:
                    providers.append(await get_provider(self.redis, self.keys, name))
                except NotFound:
                    continue
                lives.append(await get_live(self.redis, self.keys, name))
        except _REFUSED as exc:
            raise self.refusal(exc) from None
        return Members(agent_id, providers, lives)

    def refusal(self, exc: Exception) -> ApiError:
        """How an unknown agent key, a missing pool or an unreachable store is answered."""
        if isinstance(exc, Unauthorized):
            return ApiError(401, "Incorrect agent key provided.", code="invalid_api_key")
        if isinstance(exc, NoPool):
            return unavailable(f"Agent {exc.agent_id!r} has no pool configured.", "no_pool", 0, 0)
        self.metrics.store_errors.inc()
        return ApiError(
            503,
            "The pool store is unreachable; try again shortly.",
            code="store_unavailable",
            type="service_unavailable_error",
        )


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
        retry_budget=RetryBudget(
            settings.retry_budget_percent,
            settings.retry_budget_min_per_s,
            settings.retry_budget_window_s,
        ),
    )
