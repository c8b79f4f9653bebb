"""The pools' quota runway: sample every provider's quota snapshot into its history, forecast
each pool (``codexpool_shared.forecast``), export the runway and publish ``pool.runway_low.v1``
once per episode (a pool that will run dry before its earliest reset).

Several health replicas may run this at once: a sample's stream id is its observation time (a
repeat is refused) and an episode is opened by ``SET NX`` on ``Keys.runway_low``, so each episode
publishes once across the fleet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from codexpool_health.fleet import Series
from codexpool_shared.events import PoolRunwayLowV1
from codexpool_shared.forecast import Forecast, forecast, read_samples, record_quota_samples
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import Publisher
from codexpool_shared.store.errors import NotFound
from codexpool_shared.store.pools import get_pool
from codexpool_shared.store.replies import text
from codexpool_shared.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


class RunwayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.runway = Series(
            Gauge(
                "codexpool_health_pool_runway_seconds",
                "Seconds until every member of the agent's pool is out of quota at the current "
                "burn rate, given resets (absent while the forecast lacks data or never runs dry).",
                ["agent"],
                registry=registry,
            )
        )
        self.before_reset = Series(
            Gauge(
                "codexpool_health_pool_runway_before_reset",
                "1 when the agent's pool runs dry before any member's limiting window resets.",
                ["agent"],
                registry=registry,
            )
        )

    def show(self, runways: dict[str, tuple[float, bool]]) -> None:
        self.runway.show({(agent,): seconds for agent, (seconds, _) in runways.items()})
        self.before_reset.show({(agent,): float(b) for agent, (_, b) in runways.items()})


class RunwayMonitor:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        publisher: Publisher,
        metrics: RunwayMetrics,
        *,
        history_maxlen: int,
        episode_ttl_s: int = 86_400,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._publisher = publisher
        self._metrics = metrics
        self._maxlen = history_maxlen
        self._episode_ttl_s = episode_ttl_s

    async def tick(self, now: float | None = None) -> dict[str, Forecast]:
        """Sample, forecast every pool, export, and open or close runway-low episodes."""
        now = time.time() if now is None else now
        redis, keys = self._redis, self._keys
        providers = sorted(text(p) for p in await redis.smembers(keys.providers))
        await record_quota_samples(redis, keys, providers, self._maxlen)
        forecasts: dict[str, Forecast] = {}
        runways: dict[str, tuple[float, bool]] = {}
        for agent in sorted(text(a) for a in await redis.smembers(keys.agents)):
            try:
                pool = await get_pool(redis, keys, agent)
            except NotFound:
                continue
            members = list(pool.providers)
            found = forecast(await read_samples(redis, keys, members, now), members, now)
            forecasts[agent] = found
            if found.pool.runway_s is not None:
                runways[agent] = (found.pool.runway_s, found.pool.before_reset)
            await self._episode(agent, found)
        self._metrics.show(runways)
        return forecasts

    async def _episode(self, agent: str, found: Forecast) -> None:
        key = self._keys.runway_low(agent)
        pool = found.pool
        if not (pool.before_reset and pool.exhausts_at is not None and pool.limited_by):
            await self._redis.delete(key)
            return
        if not await self._redis.set(key, "1", nx=True, ex=self._episode_ttl_s):
            await self._redis.expire(key, self._episode_ttl_s)
            return
        resets = [
            r.resets_at
            for r in found.providers
            if r.window == pool.limited_by and r.resets_at and r.resets_at > pool.exhausts_at
        ]
        self._publisher.publish(
            PoolRunwayLowV1(
                agent_id=agent,
                runway_s=pool.runway_s or 0.0,
                exhausts_at=_at(pool.exhausts_at),
                limited_by=pool.limited_by,
                earliest_reset_at=_at(min(resets)) if resets else None,
            )
        )


async def runway_forever(monitor: RunwayMonitor, interval_s: float) -> None:
    """``monitor.tick()`` every ``interval_s`` until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await monitor.tick()
        except RedisError as exc:
            log.warning("runway forecast failed, will retry: %r", exc)
        except Exception:
            raise_if_cancelling()
            # A background loop: an unexpected error must not end the forecasts for good.
            log.exception("runway forecast failed, will retry")
