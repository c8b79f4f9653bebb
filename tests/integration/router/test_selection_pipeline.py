"""Selections started together share one pipeline and stay exact."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, put_pool, register_provider
from codexpool_shared.store.agents import key_digest
from codexpool_shared.store.lane import lane_for
from codexpool_shared.store.selection import Selector
from codexpool_shared.testing.redis_server import private_redis
from tests.integration.router.helpers import auth_json, keyring
from tests.integration.test_lane import count_writes


async def _pool(redis: Redis, keys: Keys) -> str:
    ring = keyring()
    for i in (1, 2, 3):
        await register_provider(redis, keys, ring, f"p{i}", auth_json(f"acc-{i}"))
    _, key = await create_agent(redis, keys, "agent")
    await put_pool(redis, keys, "agent", "round-robin", ["p1", "p2", "p3"])
    return key_digest(key)


async def test_concurrent_selections_are_exact_round_robin(
    redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(namespace)
    digest = await _pool(redis, keys)
    lane = lane_for(redis, "EVALSHA", 1.0)
    selector = Selector(redis, keys, Settings(namespace=namespace), lane)
    now = int(time.time() * 1000)
    await selector.select(digest, now, "")
    writes = count_writes(monkeypatch)
    selections = await asyncio.gather(*(selector.select(digest, now, "") for _ in range(30)))
    await selector.aclose()
    names = Counter(s.candidates[0].name for s in selections)
    assert names == {"p1": 10, "p2": 10, "p3": 10}
    if lane is not None:
        assert writes == [30]  # one write for the thirty (a cluster client sends each alone)


async def test_a_pipeline_survives_an_empty_script_cache(tmp_path: Path, namespace: str) -> None:
    with private_redis(tmp_path / "redis") as server:
        redis = Redis.from_url(server.url)
        try:
            keys = Keys(namespace)
            digest = await _pool(redis, keys)
            selector = Selector(
                redis, keys, Settings(namespace=namespace), lane_for(redis, "EVALSHA", 1.0)
            )
            now = int(time.time() * 1000)
            await redis.script_flush()
            selections = await asyncio.gather(*(selector.select(digest, now, "") for _ in range(6)))
            await selector.aclose()
            assert Counter(s.candidates[0].name for s in selections) == {"p1": 2, "p2": 2, "p3": 2}
        finally:
            await redis.aclose()
