"""The concurrency leases this replica holds (``codexpool_shared.store.leases``).

The selection script takes the first candidate's lease; a failover to another capped member
takes one here. Every held lease is renewed every third of ``ROUTER_LEASE_TTL_S`` in one
pipelined round trip, off the request path, and released (fire-and-forget) when its attempt
ends: a failed attempt at once, a relayed answer once it is fully sent. If this process dies,
renewals stop and its leases expire within one TTL.
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.livewriter import LiveWriter, now_ms
from codexpool_router.metrics import Metrics
from codexpool_shared.keys import Keys
from codexpool_shared.store import leases


class Leases:
    def __init__(
        self, redis: Redis, keys: Keys, settings: Settings, writer: LiveWriter, metrics: Metrics
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = int(settings.lease_ttl_s * 1000)
        self._writer = writer
        self._metrics = metrics
        self._held: dict[str, str] = {}
        """Lease id -> provider."""
        self._renewer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._renewer = asyncio.create_task(self._renew_loop(), name="lease-renew")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for lease_id in list(self._held):
            self.release(lease_id)

    def hold(self, provider: str, lease_id: str) -> None:
        """A lease the selection script took for this replica."""
        self._held[lease_id] = provider

    async def acquire(self, provider: str, lease_id: str, cap: int) -> bool:
        """Take a lease on ``provider`` (a failover); False when it is at its cap."""
        taken = await leases.acquire(
            self._redis, self._keys, provider, lease_id, cap, now_ms(), self._ttl_ms
        )
        if taken:
            self._held[lease_id] = provider
        return taken

    def release(self, lease_id: str) -> None:
        provider = self._held.pop(lease_id, None)
        if provider is not None:
            self._writer.spawn(leases.release(self._redis, self._keys, provider, lease_id))

    @property
    def held(self) -> int:
        return len(self._held)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            if not self._held:
                continue
            held = [(provider, lease_id) for lease_id, provider in self._held.items()]
            try:
                await leases.renew(self._redis, self._keys, held, now_ms() + self._ttl_ms)
            except Exception:
                self._metrics.background_errors.inc()
