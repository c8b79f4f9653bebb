"""What every request handler needs, opened and closed by the app's lifespan.

Both ways a request meets the pool authenticate the same way: the agent key's SHA-256
(``inbound.agent_key_digest``) is looked up at ``Keys.api_key``, and an unknown key, a missing
pool or an unreachable store is answered by :meth:`Core.refusal`. The responses routes do the
lookup inside the selection script (one round trip); the usage and models routes, which read
every member, in :meth:`Core.members`. When Redis fails, :meth:`Core.select` answers from the
agent's last selection (fail-open, ``failopen.py``); :meth:`Core.members` fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from opentelemetry.util.types import AttributeValue
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from codexpool_router.answers import agent_refused, unavailable
from codexpool_router.config import Settings
from codexpool_router.egress import Egress
from codexpool_router.failopen import BREAKER_STATES, LocalRouting, Snapshots, StoreBreaker
from codexpool_router.leases import Leases
from codexpool_router.livewriter import LiveWriter, now_ms
from codexpool_router.metrics import Metrics
from codexpool_router.refresh import Tokens, build_refresher
from codexpool_router.retry_budget import RetryBudget
from codexpool_router.upstream import attempt_attributes
from codexpool_shared.crypto import Keyring
from codexpool_shared.errors import ApiError
from codexpool_shared.events import BaseEvent, EncodedEvent
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import Publisher
from codexpool_shared.redis import STORE_FAILED
from codexpool_shared.store import (
    LiveState,
    NotFound,
    Provider,
    TokenRefresher,
    get_live,
    get_pool,
    get_provider,
)
from codexpool_shared.store.lane import lane_for
from codexpool_shared.store.selection import (
    AgentRefused,
    NoPool,
    Selection,
    Selector,
    Unauthorized,
)

_REFUSED: tuple[type[Exception], ...] = (Unauthorized, NoPool, *STORE_FAILED)


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
    breaker: StoreBreaker
    snapshots: Snapshots
    local: LocalRouting
    responses_url: str
    attempt_attributes: Mapping[str, AttributeValue]
    """What every attempt's CLIENT span starts with (``upstream.attempt_attributes``)."""
    compact_url: str
    """The remote compaction endpoint (``responses_url`` + ``/compact``)."""
    compact_attempt_attributes: Mapping[str, AttributeValue]
    """``attempt_attributes`` of a compaction attempt (its own ``url.full``)."""
    client_timeout: aiohttp.ClientTimeout
    retry_budget: RetryBudget
    leases: Leases
    """Concurrency leases this replica holds (``leases.py``)."""
    egress: Egress
    """Each provider's upstream session (its egress proxy, or ``session``)."""
    keyring: Keyring
    """Decrypts what the store keeps encrypted off the hot path (the pool's overflow key)."""
    attempts_in_flight: Counter[str] = field(default_factory=Counter)
    """Upstream attempts this replica is waiting on, per provider (``failover.py``)."""
    probe: asyncio.Task[None] | None = None
    """The store breaker's probe while it runs (a task must stay referenced)."""
    requests: int = 0
    """Requests of the responses routes in progress in this process."""

    def publish(self, event: BaseEvent | EncodedEvent) -> None:
        # An event must never fail a request; the publisher counts its own drops.
        with contextlib.suppress(Exception):
            self.publisher.publish(event)

    async def select(
        self, key_digest: str, session_digest: str, model: str = "", request_id: str = ""
    ) -> Selection:
        """Authenticate, apply the agent's limits and select in one round trip (``select.lua``).

        When Redis fails or the store breaker is open, the agent's last selection answers
        (``failopen.py``); an agent without a fresh one gets 503 ``store_unavailable``. A call
        never waits longer than the Redis timeout, whatever the client's retries would do.
        """
        breaker = self.breaker
        if not breaker.allow():
            if breaker.probe_due():
                self.probe = asyncio.create_task(self._probe(), name="store-probe")
            return self._fallback(key_digest, "breaker_open")
        try:
            snapshot = self.snapshots.due(key_digest, self.settings.failopen_refresh_s)
            async with asyncio.timeout(self.settings.redis_timeout_s):
                selection = await self.selector.select(
                    key_digest,
                    now_ms(),
                    session_digest,
                    model,
                    request_id,
                    snapshot=snapshot,
                    alone=self.requests == 1,
                )
        except (Unauthorized, NoPool, AgentRefused) as exc:
            breaker.success()
            raise self.refusal(exc) from None
        except STORE_FAILED as exc:
            breaker.failure()
            timeout = isinstance(exc, TimeoutError | RedisTimeoutError)
            return self._fallback(key_digest, "timeout" if timeout else "error")
        breaker.success()
        if snapshot:
            self.snapshots.record(key_digest, selection)
            self.tokens.warm(selection.members)
        self.writer.key_used(selection.agent_id, key_digest)
        if not selection.candidates and selection.at_capacity:
            return await self._wait_for_room(key_digest, session_digest, model, request_id)
        return selection

    async def _wait_for_room(
        self, key_digest: str, session_digest: str, model: str, request_id: str
    ) -> Selection:
        """Every eligible member is at its concurrency cap: select again until one has a free
        slot or ``capacity_wait_s`` has passed (the last selection then answers 503)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.capacity_wait_s
        while True:
            await asyncio.sleep(self.settings.capacity_poll_s)
            try:
                async with asyncio.timeout(self.settings.redis_timeout_s):
                    selection = await self.selector.select(
                        key_digest, now_ms(), session_digest, model, request_id, snapshot=False
                    )
            except (Unauthorized, NoPool, AgentRefused) as exc:
                raise self.refusal(exc) from None
            except STORE_FAILED:
                self.breaker.failure()
                return self._fallback(key_digest, "error")
            if selection.candidates or not selection.at_capacity or loop.time() >= deadline:
                return selection

    async def _probe(self) -> None:
        try:
            async with asyncio.timeout(self.settings.redis_timeout_s):
                await self.redis.ping()
        except STORE_FAILED:
            self.breaker.failure()
        except BaseException:
            self.breaker.abandon()
            raise
        else:
            self.breaker.success()

    def _fallback(self, key_digest: str, reason: str) -> Selection:
        selection = self.local.select(key_digest, now_ms())
        if selection is None:
            raise self.refusal(ConnectionError("store unavailable"))
        self.metrics.store_fallback.labels(reason).inc()
        return selection

    async def members(self, key_digest: str) -> Members:
        """Authenticate and read the agent's pool: each member's record and live state."""
        if not self.breaker.allow():
            raise self.refusal(ConnectionError("store breaker open"))
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
        if isinstance(exc, AgentRefused):
            return agent_refused(exc, now_ms())
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
    breaker = StoreBreaker(
        settings.failopen_failures,
        settings.failopen_open_s,
        on_change=lambda state: metrics.store_breaker.set(BREAKER_STATES[state]),
    )
    snapshots = Snapshots(settings.failopen_max_agents)
    tokens = Tokens(redis, keys, keyring, settings.redis_timeout_s)
    responses_url = settings.upstream_base_url.rstrip("/") + "/codex/responses"
    writer = LiveWriter(redis, keys, settings, metrics)
    egress = Egress(redis, keys, keyring, session, settings, metrics)
    refresher = build_refresher(
        redis, keys, keyring, egress.session, settings, metrics, publisher.publish
    )
    core = Core(
        settings=settings,
        keys=keys,
        redis=redis,
        session=session,
        selector=Selector(
            redis,
            keys,
            settings,
            lane_for(redis, "EVALSHA", settings.redis_timeout_s),
        ),
        tokens=tokens,
        refresher=refresher,
        writer=writer,
        publisher=publisher,
        metrics=metrics,
        breaker=breaker,
        snapshots=snapshots,
        local=LocalRouting(snapshots, settings.failopen_max_staleness_s, settings.max_attempts),
        responses_url=responses_url,
        attempt_attributes=attempt_attributes(responses_url),
        compact_url=responses_url + "/compact",
        compact_attempt_attributes=attempt_attributes(responses_url + "/compact"),
        client_timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout_s, sock_read=settings.idle_timeout_s
        ),
        retry_budget=RetryBudget(
            settings.retry_budget_percent,
            settings.retry_budget_min_per_s,
            settings.retry_budget_window_s,
        ),
        leases=Leases(redis, keys, settings, writer, metrics),
        egress=egress,
        keyring=keyring,
    )
    metrics.tokens_held.set_function(lambda: len(tokens))
    metrics.in_flight.set_function(lambda: core.requests)
    return core
