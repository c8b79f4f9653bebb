"""The fleet view the health service exports on its periodic tick (``codexpool_health_*``).

Each tick reads the registry, every pool and every provider's live state from Redis, and the
depth of the outcome queue and its dead-letter queue from RabbitMQ (a passive declare), and sets:

- ``codexpool_health_pool_members{agent}`` and ``codexpool_health_pool_available_members{agent}``
  (members a request could be sent to now: closed or half-open, active, not cooling down);
- ``codexpool_health_provider_state{provider,state}``: 1 for the state the store shows, 0 for
  the others (the same derivation as the selection script, ``store/select.lua``);
- ``codexpool_health_quota_used_percent{provider,window}`` and
  ``codexpool_health_quota_reset_seconds{provider,window}`` from each provider's last quota
  snapshot (a window whose reset time has passed shows 0 and 0: the upstream starts it afresh);
- ``codexpool_health_queue_messages{queue}``: ready messages per queue.

Labels are agent ids, provider names (registry slugs) and the namespace's two queue names, so
they are bounded by the registry; series of agents and providers that are gone are removed, and
a source that cannot be read removes its series rather than leave stale values behind. Every
health replica exports the same view: aggregate with ``max`` across instances, not ``sum``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from aio_pika.abc import AbstractChannel, AbstractConnection
from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from codexpool_shared.keys import Keys
from codexpool_shared.messaging import close_quietly, connect
from codexpool_shared.store import LiveState, Provider, list_providers
from codexpool_shared.store.live import parse_live
from codexpool_shared.store.pools import pool_from_hash
from codexpool_shared.store.replies import decode_hash, text
from codexpool_shared.tasks import raise_if_cancelling

log = logging.getLogger("codexpool_health")

ProviderState = Literal["closed", "open", "half_open", "cooling_down", "needs_reauth", "disabled"]
"""A provider's state as the store shows it (``codexpool_health_provider_state``)."""
STATES: tuple[ProviderState, ...] = get_args(ProviderState)

_AVAILABLE: frozenset[ProviderState] = frozenset({"closed", "half_open"})

Labels = tuple[str, ...]

_QUEUE_READ_TIMEOUT_S = 5.0
"""A broker that stopped answering costs one tick this long, not a stalled rescoring loop."""


def provider_state(provider: Provider, live: LiveState, now_ms: int) -> ProviderState:
    """What the selection script would make of ``provider`` at ``now_ms``."""
    if provider.status != "active":
        return provider.status
    if live.cooldown_until_ms > now_ms:
        return "cooling_down"
    if live.circuit_open_until_ms > now_ms:
        return "open"
    if live.circuit_open_until_ms > 0:
        return "half_open"
    return "closed"


@dataclass(frozen=True, slots=True)
class Fleet:
    """One reading of the pools and providers, as the gauges show it."""

    pools: Mapping[str, tuple[int, int]]
    """Each agent's pool: (members, available members)."""

    states: Mapping[str, ProviderState]
    quotas: Mapping[tuple[str, str], tuple[float, float | None]]
    """(provider, window) -> (used percent, seconds to its reset, None when not reported)."""


def fleet_of(
    providers: Sequence[Provider],
    lives: Mapping[str, LiveState],
    pools: Mapping[str, Sequence[str]],
    now_ms: int,
) -> Fleet:
    """The fleet view of what was read from the store (pure, for tests)."""
    states = {
        p.name: provider_state(p, lives.get(p.name) or LiveState(provider=p.name), now_ms)
        for p in providers
    }
    quotas: dict[tuple[str, str], tuple[float, float | None]] = {}
    for name, live in lives.items():
        if live.quota is None:
            continue
        for window, reading in (
            ("primary", live.quota.primary),
            ("secondary", live.quota.secondary),
        ):
            if reading is None:
                continue
            if reading.resets_at is None:
                quotas[name, window] = (reading.used_percent, None)
                continue
            left = reading.resets_at - now_ms / 1000
            quotas[name, window] = (reading.used_percent, left) if left > 0 else (0.0, 0.0)
    return Fleet(
        pools={
            agent: (len(members), sum(states.get(m) in _AVAILABLE for m in members))
            for agent, members in pools.items()
        },
        states=states,
        quotas=quotas,
    )


async def read_fleet(redis: Redis, keys: Keys, now_ms: int) -> Fleet:
    """Read the registry, every pool and every live state (three round trips)."""
    providers = await list_providers(redis, keys)
    agents = sorted(text(a) for a in await redis.smembers(keys.agents))
    async with redis.pipeline(transaction=False) as pipe:
        for provider in providers:
            pipe.hgetall(keys.live(provider.name))
        for agent in agents:
            pipe.hgetall(keys.pool(agent))
        rows = await pipe.execute()
    lives = {p.name: parse_live(p.name, row) for p, row in zip(providers, rows, strict=False)}
    pools = {}
    for agent, row in zip(agents, rows[len(providers) :], strict=True):
        if row:
            pools[agent] = pool_from_hash(agent, decode_hash(row)).providers
    return fleet_of(providers, lives, pools, now_ms)


class QueueDepth:
    """Ready messages in a few queues, by passive declares on one connection kept open.

    A passive declare of a queue that does not exist (yet) closes the channel; the next read
    opens a new one.
    """

    def __init__(self, amqp_url: str, queues: Sequence[str], *, name: str) -> None:
        self._url = amqp_url
        self._queues = tuple(queues)
        self._name = name
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    async def read(self) -> dict[str, int]:
        """Each queue's ready messages.

        Raises:
            Exception: The broker could not be reached or a queue is missing.
        """
        if self._connection is None or self._connection.is_closed:
            self._connection = await connect(self._url, name=self._name)
            self._channel = None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        depths = {}
        for queue in self._queues:
            declared = await self._channel.declare_queue(queue, passive=True)
            depths[queue] = declared.declaration_result.message_count or 0
        return depths

    async def close(self) -> None:
        """Close the connection, if one is open."""
        if self._connection is not None:
            await close_quietly(self._connection)
            self._connection = self._channel = None


class Series:
    """A labelled gauge whose children are exactly the label sets of the last ``show``."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._shown: set[Labels] = set()

    def show(self, values: Mapping[Labels, float]) -> None:
        for labels in self._shown - values.keys():
            self._gauge.remove(*labels)
        for labels, value in values.items():
            self._gauge.labels(*labels).set(value)
        self._shown = set(values)


class FleetMetrics:
    """The fleet gauges, on the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def series(name: str, doc: str, labels: Sequence[str]) -> Series:
            return Series(Gauge(name, doc, labels, registry=registry))

        self.members = series(
            "codexpool_health_pool_members", "Members in the agent's pool.", ["agent"]
        )
        self.available = series(
            "codexpool_health_pool_available_members",
            "Members of the agent's pool a request could be sent to now: active, not cooling "
            "down, circuit closed or half-open.",
            ["agent"],
        )
        self.state = series(
            "codexpool_health_provider_state",
            "1 for the state the store shows for the provider, 0 for the others.",
            ["provider", "state"],
        )
        self.quota_used = series(
            "codexpool_health_quota_used_percent",
            "Share of the provider's quota window used, as its last upstream answer reported.",
            ["provider", "window"],
        )
        self.quota_reset = series(
            "codexpool_health_quota_reset_seconds",
            "Seconds until the provider's quota window resets.",
            ["provider", "window"],
        )
        self.queue = series(
            "codexpool_health_queue_messages",
            "Messages ready in the queue (the outcome queue: consumer lag in messages).",
            ["queue"],
        )

    def show(self, fleet: Fleet | None) -> None:
        """Export ``fleet``; None (the store could not be read) removes every fleet series."""
        if fleet is None:
            fleet = Fleet({}, {}, {})
        self.members.show({(agent,): n for agent, (n, _) in fleet.pools.items()})
        self.available.show({(agent,): n for agent, (_, n) in fleet.pools.items()})
        self.state.show(
            {
                (name, state): 1.0 if state == current else 0.0
                for name, current in fleet.states.items()
                for state in STATES
            }
        )
        self.quota_used.show({labels: used for labels, (used, _) in fleet.quotas.items()})
        self.quota_reset.show(
            {labels: left for labels, (_, left) in fleet.quotas.items() if left is not None}
        )

    def show_queues(self, depths: Mapping[str, int] | None) -> None:
        """Export queue depths; None (the broker could not be read) removes them."""
        self.queue.show({(queue,): float(n) for queue, n in (depths or {}).items()})


class FleetReporter:
    """Reads the fleet and exports it; a failure is logged and never raised (one tick's)."""

    def __init__(
        self, redis: Redis, keys: Keys, metrics: FleetMetrics, queues: QueueDepth | None
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._metrics = metrics
        self._queues = queues

    async def refresh(self, now_ms: int) -> None:
        """Read and export the fleet as of ``now_ms`` (epoch ms)."""
        try:
            fleet: Fleet | None = await read_fleet(self._redis, self._keys, now_ms)
        except (RedisError, OSError, ValueError) as exc:
            log.warning("reading the fleet failed, will retry: %r", exc)
            fleet = None
        self._metrics.show(fleet)
        if self._queues is None:
            return
        try:
            async with asyncio.timeout(_QUEUE_READ_TIMEOUT_S):
                depths: dict[str, int] | None = await self._queues.read()
        except Exception as exc:
            raise_if_cancelling()
            # The broker is down or the queue is not declared yet; the next tick tries again.
            log.warning("reading the queue depths failed, will retry: %r", exc)
            await self._queues.close()
            depths = None
        self._metrics.show_queues(depths)
