"""Live-state writes that never sit on the client's path.

Quota snapshots are coalesced per provider, and when each router key was last used per key;
both are flushed every ``quota_flush_s``, one round trip each. Each snapshot is stamped with the
time its answer arrived, so a flush that lands after a newer snapshot (another replica's, or
Refresh Live State's) leaves the newer one in place. Cooldowns,
circuit updates and affinity moves are fire-and-forget tasks (other replicas see them a round
trip later). Failures are counted, never raised to a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping
from typing import Any

from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.metrics import Metrics
from codexpool_router.quota import snapshot_from_headers
from codexpool_shared.keys import Keys
from codexpool_shared.store import (
    extend_cooldown,
    record_failure,
    record_keys_used,
    record_success,
    write_quotas,
)
from codexpool_shared.store.agents import key_id_of

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


class LiveWriter:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings, metrics: Metrics) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._metrics = metrics
        self._quota: dict[str, tuple[Mapping[str, str], float]] = {}
        self._keys_used: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="quota-flush")

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._flush()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    def spawn(self, work: Awaitable[Any]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, work: Awaitable[Any]) -> None:
        try:
            await work
        except Exception:
            self._metrics.background_errors.inc()
            log.warning("live-state write failed", exc_info=True)

    def quota(self, provider: str, headers: Mapping[str, str]) -> None:
        """Remember the provider's latest answer headers; only the last one per flush is
        parsed, so a busy provider costs one snapshot per interval, not one per request."""
        self._quota[provider] = (headers, time.time())

    def key_used(self, agent_id: str, key_digest: str) -> None:
        """Remember that the agent's key served a request now (one dict store per request)."""
        self._keys_used[(agent_id, key_digest)] = int(time.time())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.quota_flush_s)
            try:
                await self._flush()
            except Exception:
                self._metrics.background_errors.inc()

    async def _flush(self) -> None:
        if self._keys_used:
            seen, self._keys_used = self._keys_used, {}
            used = {(agent_id, key_id_of(digest)): at for (agent_id, digest), at in seen.items()}
            await record_keys_used(self._redis, self._keys, used)
        if not self._quota:
            return
        pending, self._quota = self._quota, {}
        snapshots = {}
        for provider, (headers, received) in pending.items():
            snapshot = snapshot_from_headers(headers, received)
            if snapshot is not None:
                snapshots[provider] = snapshot
        if snapshots:
            await write_quotas(self._redis, self._keys, snapshots)

    def cooldown(self, provider: str, until_ms: int, reason: str) -> asyncio.Task[None]:
        self._metrics.cooldown(provider, reason)
        return self.spawn(
            extend_cooldown(self._redis, self._keys, provider, until_ms, reason, now_ms=now_ms())
        )

    def failure(
        self, provider: str, probe: bool, started_ms: int, *, at_once: bool = False
    ) -> None:
        """Count a health fault of an attempt that started at ``started_ms`` (epoch ms);
        ``at_once`` opens a closed circuit without waiting for the streak's threshold."""
        self.spawn(self._failure(provider, probe, started_ms, at_once))

    async def _failure(self, provider: str, probe: bool, started_ms: int, at_once: bool) -> None:
        s = self._settings
        opened = await record_failure(
            self._redis,
            self._keys,
            provider,
            now_ms=now_ms(),
            started_ms=started_ms,
            threshold=1 if at_once else s.circuit_failures,
            base_ms=int(s.circuit_base_s * 1000),
            max_ms=int(s.circuit_max_s * 1000),
            probe=probe,
        )
        if probe:
            await self._redis.delete(self._keys.probe_lock(provider))
        if opened:
            self._metrics.circuit(provider, "opened")

    def success(self, provider: str, probe: bool) -> asyncio.Task[None]:
        return self.spawn(self._success(provider, probe))

    async def _success(self, provider: str, probe: bool) -> None:
        await record_success(self._redis, self._keys, provider, now_ms=now_ms(), probe=probe)
        if probe:
            await self._redis.delete(self._keys.probe_lock(provider))
            self._metrics.circuit(provider, "closed")

    def agent_tokens(self, agent_id: str, tokens: int) -> None:
        """Add a request's tokens to the agent's day (its ``tokens_per_day`` limit)."""
        self.spawn(self._agent_tokens(agent_id, tokens))

    async def _agent_tokens(self, agent_id: str, tokens: int) -> None:
        key = self._keys.agent_tokens(agent_id, str(now_ms() // DAY_MS))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, tokens)
            pipe.pexpire(key, 2 * DAY_MS)
            await pipe.execute()

    def release_probe(self, provider: str) -> None:
        self.spawn(self._redis.delete(self._keys.probe_lock(provider)))

    def affinity(self, agent_id: str, session_digest: str, provider: str) -> None:
        self.spawn(
            self._redis.set(
                self._keys.affinity(agent_id, session_digest),
                provider,
                px=int(self._settings.affinity_ttl_s * 1000),
            )
        )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def epoch_ms(perf_started: float) -> int:
    """The epoch ms of an earlier ``time.perf_counter()`` reading (an attempt's start)."""
    return now_ms() - int((time.perf_counter() - perf_started) * 1000)
