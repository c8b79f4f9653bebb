"""The selection script against the real Redis: eligibility, strategies, affinity, probes."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_shared.events import Decision
from codexpool_shared.keys import Keys
from codexpool_shared.store import (
    create_agent,
    extend_cooldown,
    key_digest,
    put_pool,
    record_failure,
    register_provider,
    remove_member,
    set_provider_status,
)
from codexpool_shared.store.explain import decision_fields
from codexpool_shared.store.selection import NoPool, Selector, Unauthorized
from tests.integration.router.helpers import auth_json, keyring


def now_ms() -> int:
    return int(time.time() * 1000)


class Fixture:
    def __init__(self, redis: Redis, keys: Keys, selector: Selector) -> None:
        self.redis, self.keys, self.selector = redis, keys, selector
        self.digest = ""

    async def setup(self, strategy: str, n: int = 3) -> None:
        ring = keyring()
        for i in range(1, n + 1):
            await register_provider(self.redis, self.keys, ring, f"p{i}", auth_json(f"acc-{i}"))
        _, key = await create_agent(self.redis, self.keys, "agent")
        self.digest = key_digest(key)
        await put_pool(self.redis, self.keys, "agent", strategy, [f"p{i}" for i in range(1, n + 1)])

    async def order(self, session: str = "") -> list[str]:
        selection = await self.selector.select(self.digest, now_ms(), session)
        return [c.name for c in selection.candidates]


@pytest.fixture
def pool(redis: Redis, namespace: str) -> Fixture:
    keys = Keys(namespace)
    settings = Settings(namespace=namespace, circuit_base_s=60, probe_lock_s=30)
    return Fixture(redis, keys, Selector(redis, keys, settings))


async def test_unknown_key_and_missing_pool(pool: Fixture) -> None:
    with pytest.raises(Unauthorized):
        await pool.selector.select(key_digest("cpk_nope"), now_ms(), "")
    _, key = await create_agent(pool.redis, pool.keys, "lonely")
    with pytest.raises(NoPool):
        await pool.selector.select(key_digest(key), now_ms(), "")


async def test_round_robin_rotates_over_eligible_members(pool: Fixture) -> None:
    await pool.setup("round-robin")
    firsts = Counter([(await pool.order())[0] for _ in range(30)])
    assert firsts == {"p1": 10, "p2": 10, "p3": 10}
    await set_provider_status(pool.redis, pool.keys, "p2", "needs_reauth")
    orders = [await pool.order() for _ in range(10)]
    assert all(sorted(o) == ["p1", "p3"] for o in orders)
    assert Counter(o[0] for o in orders) == {"p1": 5, "p3": 5}


async def test_primary_first_and_cooldown(pool: Fixture) -> None:
    await pool.setup("primary-first")
    assert await pool.order() == ["p1", "p2", "p3"]
    await extend_cooldown(
        pool.redis, pool.keys, "p1", now_ms() + 60_000, "usage_limit", now_ms=now_ms()
    )
    assert await pool.order() == ["p2", "p3"]
    for name in ("p2", "p3"):
        await extend_cooldown(
            pool.redis, pool.keys, name, now_ms() + 90_000, "usage_limit", now_ms=now_ms()
        )
    selection = await pool.selector.select(pool.digest, now_ms(), "")
    assert selection.candidates == ()
    assert 50_000 < selection.quota_wait_ms - now_ms() <= 60_000
    assert selection.other_wait_ms == 0


async def test_open_circuit_is_skipped_then_probed_by_one_caller(pool: Fixture) -> None:
    await pool.setup("primary-first")
    opened = await record_failure(
        pool.redis,
        pool.keys,
        "p1",
        now_ms=now_ms() - 120_000,
        started_ms=now_ms() - 121_000,
        threshold=1,
        base_ms=60_000,
        max_ms=300_000,
    )
    assert opened
    selection = await pool.selector.select(pool.digest, now_ms(), "")
    assert [(c.name, c.probe) for c in selection.candidates] == [
        ("p1", True),
        ("p2", False),
        ("p3", False),
    ]
    assert await pool.order() == ["p2", "p3"]
    await pool.redis.hset(pool.keys.live("p1"), "circuit_open_until_ms", now_ms() + 60_000)
    assert await pool.order() == ["p2", "p3"]


async def test_low_health_score_opens_the_circuit(pool: Fixture) -> None:
    await pool.setup("primary-first")
    await pool.redis.hset(pool.keys.live("p1"), mapping={"score": "12.5", "band": "unhealthy"})
    assert await pool.order() == ["p2", "p3"]
    live = await pool.redis.hget(pool.keys.live("p1"), "circuit_open_until_ms")
    assert int(live or 0) > now_ms()
    # Stamped like any opening: failures of attempts that started earlier do not count.
    opened_at = await pool.redis.hget(pool.keys.live("p1"), "circuit_opened_at_ms")
    assert now_ms() - 5_000 < int(opened_at or 0) <= now_ms()


async def test_quota_aware_prefers_most_remaining(pool: Fixture) -> None:
    await pool.setup("quota-aware")
    reset = int(time.time()) + 3 * 3600
    for name, used in (("p1", 80), ("p2", 10), ("p3", 40)):
        await pool.redis.hset(
            pool.keys.live(name),
            mapping={
                "primary_used_percent": used,
                "primary_window_minutes": 300,
                "primary_resets_at": reset,
            },
        )
    assert await pool.order() == ["p2", "p3", "p1"]


async def test_session_affinity_sticks_and_is_released(pool: Fixture) -> None:
    await pool.setup("round-robin")
    first = (await pool.order("session-a"))[0]
    for _ in range(5):
        assert (await pool.order("session-a"))[0] == first
    await extend_cooldown(
        pool.redis, pool.keys, first, now_ms() + 60_000, "rate_limited", now_ms=now_ms()
    )
    moved = (await pool.order("session-a"))[0]
    assert moved != first
    assert (await pool.order("session-a"))[0] == moved


async def test_removed_member_is_never_selected(pool: Fixture) -> None:
    await pool.setup("round-robin")
    await remove_member(pool.redis, pool.keys, "agent", "p2")
    for _ in range(6):
        assert "p2" not in await pool.order()


async def test_selection_survives_an_empty_script_cache(pool: Fixture) -> None:
    """A restarted or failed-over Redis forgets loaded scripts; the next selection reloads."""
    await pool.setup("round-robin", n=2)
    await pool.redis.script_flush()
    assert await pool.order() in (["p1", "p2"], ["p2", "p1"])
    assert await pool.order() in (["p1", "p2"], ["p2", "p1"])


async def test_decision_names_every_member_and_why(pool: Fixture) -> None:
    await pool.setup("round-robin", n=5)
    until = now_ms() + 60_000
    await extend_cooldown(pool.redis, pool.keys, "p1", until, "usage_limit", now_ms=now_ms())
    await set_provider_status(pool.redis, pool.keys, "p2", "needs_reauth")
    await pool.redis.hset(pool.keys.live("p3"), "circuit_open_until_ms", now_ms() + 30_000)
    selection = await pool.selector.select(pool.digest, now_ms(), "session-1")
    made = Decision.model_validate(decision_fields(selection))
    by_name = {c.provider: c for c in made.candidates}
    assert made.pool_size == 5 and set(by_name) == {"p1", "p2", "p3", "p4", "p5"}
    assert [c.provider for c in made.candidates[:2]] == [c.name for c in selection.candidates]
    assert [c.rank for c in made.candidates[:2]] == [0, 1]
    assert {c.reason for c in made.candidates[:2]} == {"strategy_order"}
    p1 = by_name["p1"]
    assert (p1.eligible, p1.reason, p1.detail) == (False, "cooldown", "usage_limit")
    assert p1.until is not None and abs(p1.until.timestamp() * 1000 - until) < 2
    assert (by_name["p2"].reason, by_name["p2"].detail) == ("needs_reauth", "needs_reauth")
    assert by_name["p3"].reason == "circuit_open" and by_name["p3"].until is not None
    again = Decision.model_validate(
        decision_fields(await pool.selector.select(pool.digest, now_ms(), "session-1"))
    )
    assert again.candidates[0].reason == "affinity"
    assert again.candidates[0].provider == made.candidates[0].provider
