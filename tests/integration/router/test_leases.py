"""Per-provider concurrency caps in the selection script and the lease store (issue 20)."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, key_digest, put_pool, register_provider
from codexpool_shared.store.leases import acquire, in_flight, release, renew, set_max_concurrent
from codexpool_shared.store.selection import Selector
from tests.integration.router.helpers import auth_json, keyring


@pytest.fixture
async def pool(redis: Redis, namespace: str) -> tuple[Keys, Selector, str]:
    keys = Keys(namespace)
    for i in (1, 2):
        await register_provider(redis, keys, keyring(), f"p{i}", auth_json(f"acc-{i}"))
    _, key = await create_agent(redis, keys, "agent")
    await put_pool(redis, keys, "agent", "primary-first", ["p1", "p2"])
    settings = Settings(namespace=namespace, lease_ttl_s=10)
    return keys, Selector(redis, keys, settings), key_digest(key)


async def test_a_capped_member_is_passed_over_when_full(redis: Redis, pool) -> None:
    keys, selector, digest = pool
    now = int(time.time() * 1000)
    await set_max_concurrent(redis, keys, "p1", 2)
    orders = []
    for i in range(3):
        selection = await selector.select(digest, now, "", "m", f"r{i}")
        orders.append([(c.name, c.max_concurrent) for c in selection.candidates])
    # Two leases on p1 (taken by the script for its first candidate), then p1 is full.
    assert orders[:2] == [[("p1", 2), ("p2", 0)]] * 2
    assert orders[2] == [("p2", 0)]
    assert await in_flight(redis, keys, "p1", now) == 2
    await set_max_concurrent(redis, keys, "p2", 1)
    assert await acquire(redis, keys, "p2", "x:p2", 1, now, 10_000)
    empty = await selector.select(digest, now, "", "m", "r9")
    assert empty.candidates == () and empty.at_capacity == 2
    # A released lease frees its slot; an expired one too, and renewing does not revive it.
    await release(redis, keys, "p1", "r0:p1")
    assert [c.name for c in (await selector.select(digest, now, "", "m", "r4")).candidates] == [
        "p1"
    ]
    later = now + 10_001
    await renew(redis, keys, [("p2", "gone:p2")], later + 10_000)
    assert await in_flight(redis, keys, "p2", later) == 0
    assert await acquire(redis, keys, "p2", "y:p2", 1, later, 10_000)
    assert not await acquire(redis, keys, "p2", "z:p2", 1, later, 10_000)
    await set_max_concurrent(redis, keys, "p1", None)
    assert (await selector.select(digest, later, "", "m", "r5")).candidates[0].max_concurrent == 0
