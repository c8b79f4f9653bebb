"""The quota poll is single-flight across replicas (issue 19): of the replicas that start a round
within one interval, exactly one polls; the lock expires before the next interval."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.metrics import Metrics
from codexpool_router.quota_poll import QuotaPoller
from codexpool_router.refresh import Tokens
from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys


async def test_one_replica_polls_per_interval(redis: Redis, namespace: str) -> None:
    keys = Keys(namespace)
    settings = Settings(namespace=namespace, quota_poll_s=0.5)
    tokens = Tokens(redis, keys, Keyring.from_secret("A" * 43 + "="), settings.redis_timeout_s)
    async with aiohttp.ClientSession() as session:
        pollers = [
            QuotaPoller(
                redis, keys, settings, tokens, lambda _: session, Metrics(CollectorRegistry())
            )
            for _ in range(5)
        ]
        first = await asyncio.gather(*(p.poll() for p in pollers))
        assert sum(result is not None for result in first) == 1
        assert [r for r in first if r is not None] == [frozenset()]  # nobody cools down
        ttl = await redis.pttl(keys.quota_poll_lock)
        assert 0 < ttl <= 450  # 0.9 of the interval: the next round finds it free
        await redis.delete(keys.quota_poll_lock)  # as if the interval had passed
        second = await asyncio.gather(*(p.poll() for p in pollers))
        assert sum(result is not None for result in second) == 1
