"""Member priorities in the selection script: burn_first before normal, preserve only when no
other member is eligible, in every strategy; quota-aware's "prefer the earliest reset"."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_shared.keys import Keys
from codexpool_shared.store import (
    create_agent,
    extend_cooldown,
    get_pool,
    key_digest,
    put_pool,
    register_provider,
    remove_member,
)
from codexpool_shared.store.errors import InvalidField
from codexpool_shared.store.selection import Selector, parse_members
from tests.integration.router.helpers import auth_json, keyring


def now_ms() -> int:
    return int(time.time() * 1000)


class Fixture:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        settings = Settings(namespace=keys.namespace, circuit_base_s=60, probe_lock_s=30)
        self.selector = Selector(redis, keys, settings)
        self.digest = ""

    async def setup(self, strategy: str, priorities: dict[str, str], **options: bool) -> None:
        ring = keyring()
        for i in range(1, 4):
            await register_provider(self.redis, self.keys, ring, f"p{i}", auth_json(f"acc-{i}"))
        _, key = await create_agent(self.redis, self.keys, "agent")
        self.digest = key_digest(key)
        await put_pool(
            self.redis,
            self.keys,
            "agent",
            strategy,
            ["p1", "p2", "p3"],
            priorities=priorities,
            **options,
        )

    async def order(self) -> list[str]:
        selection = await self.selector.select(self.digest, now_ms(), "")
        return [c.name for c in selection.candidates]

    async def exhaust(self, name: str) -> None:
        await extend_cooldown(
            self.redis, self.keys, name, now_ms() + 60_000, "usage_limit", now_ms=now_ms()
        )


@pytest.fixture
def pool(redis: Redis, namespace: str) -> Fixture:
    return Fixture(redis, Keys(namespace))


@pytest.mark.parametrize("strategy", ["round-robin", "primary-first", "quota-aware"])
async def test_preserve_last_and_burn_first_first_in_every_strategy(
    pool: Fixture, strategy: str
) -> None:
    await pool.setup(strategy, {"p1": "preserve", "p3": "burn_first"})
    orders = [await pool.order() for _ in range(6)]
    assert all(o == ["p3", "p2", "p1"] for o in orders), orders
    await pool.exhaust("p3")
    assert await pool.order() == ["p2", "p1"]
    await pool.exhaust("p2")
    assert await pool.order() == ["p1"]


async def test_round_robin_rotates_within_a_tier(pool: Fixture) -> None:
    await pool.setup("round-robin", {"p3": "preserve"})
    orders = [await pool.order() for _ in range(10)]
    assert Counter(o[0] for o in orders) == {"p1": 5, "p2": 5}
    assert all(o[-1] == "p3" for o in orders)


async def test_quota_aware_prefers_the_earliest_reset_when_asked(pool: Fixture) -> None:
    now = int(time.time())
    for name, used, reset in (("p1", 10, now + 4 * 3600), ("p2", 60, now + 5400), ("p3", 30, 0)):
        live = pool.keys.live(name)
        await pool.redis.hset(
            live, mapping={"primary_used_percent": used, "primary_window_minutes": 300}
        )
        if reset:
            await pool.redis.hset(live, "primary_resets_at", reset)
    await pool.setup("quota-aware", {})
    assert await pool.order() == ["p1", "p2", "p3"]
    await put_pool(
        pool.redis,
        pool.keys,
        "agent",
        "quota-aware",
        ["p1", "p2", "p3"],
        prefer_earliest_reset=True,
    )
    assert await pool.order() == ["p2", "p1", "p3"]


async def test_priorities_are_stored_validated_and_follow_the_members(pool: Fixture) -> None:
    await pool.setup("round-robin", {"p1": "preserve", "p2": "normal"})
    stored = await get_pool(pool.redis, pool.keys, "agent")
    assert dict(stored.priorities) == {"p1": "preserve"}
    with pytest.raises(InvalidField) as bad:
        await put_pool(
            pool.redis, pool.keys, "agent", "round-robin", ["p1"], priorities={"p9": "x"}
        )
    assert bad.value.field == "priorities.p9"
    with pytest.raises(InvalidField):
        await put_pool(
            pool.redis, pool.keys, "agent", "round-robin", ["p1"], prefer_earliest_reset=True
        )
    after = await remove_member(pool.redis, pool.keys, "agent", "p1")
    assert dict(after.priorities) == {}
    assert dict((await get_pool(pool.redis, pool.keys, "agent")).priorities) == {}


async def test_fail_open_snapshot_carries_the_rank(pool: Fixture) -> None:
    await pool.setup("round-robin", {"p2": "preserve", "p3": "burn_first"})
    selection = await pool.selector.select(pool.digest, now_ms(), "")
    ranks = {m.name: m.rank for m in parse_members(selection.members)}
    assert ranks == {"p1": 1, "p2": 2, "p3": 0}
