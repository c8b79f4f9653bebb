"""The selection script's fail-open snapshot (``m`` rows) and local routing from it."""

from __future__ import annotations

import time
from collections import Counter

from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.failopen import LocalRouting, Snapshots
from codexpool_shared.events import Decision
from codexpool_shared.keys import Keys
from codexpool_shared.store import (
    create_agent,
    extend_cooldown,
    key_digest,
    put_pool,
    register_provider,
    set_provider_status,
)
from codexpool_shared.store.explain import decision_fields
from codexpool_shared.store.providers import ProviderFields
from codexpool_shared.store.selection import Selector, parse_members, token_tag
from tests.integration.router.helpers import auth_json, keyring


def now_ms() -> int:
    return int(time.time() * 1000)


async def _pool(redis: Redis, keys: Keys, strategy: str) -> str:
    ring = keyring()
    for i in range(1, 5):
        await register_provider(redis, keys, ring, f"p{i}", auth_json(f"acc-{i}"))
    _, key = await create_agent(redis, keys, "agent")
    await put_pool(redis, keys, "agent", strategy, ["p1", "p2", "p3", "p4"])
    return key_digest(key)


async def _two_attempts_p2_disabled(redis: Redis, namespace: str) -> tuple[Keys, Selector, str]:
    """A round-robin pool of p1-p4 with p2 disabled, selected with at most two attempts."""
    keys = Keys(namespace)
    selector = Selector(redis, keys, Settings(namespace=namespace, max_attempts=2))
    digest = await _pool(redis, keys, "round-robin")
    await set_provider_status(redis, keys, "p2", "disabled")
    return keys, selector, digest


async def test_snapshot_lists_every_active_member_in_pool_order(
    redis: Redis, namespace: str
) -> None:
    keys, selector, digest = await _two_attempts_p2_disabled(redis, namespace)
    until = now_ms() + 60_000
    await extend_cooldown(redis, keys, "p3", until, "usage_limit", now_ms=now_ms())
    selection = await selector.select(digest, now_ms(), "")
    assert len(selection.candidates) == 2  # p1 and p4, capped by max_attempts
    members = parse_members(selection.members)
    assert [m.name for m in members] == ["p1", "p3", "p4"]
    assert [(m.unavailable_until_ms, m.quota) for m in members] == [
        (0, False),
        (until, True),
        (0, False),
    ]
    tags = {c.name: c.token_tag for c in selection.candidates}
    for name in ("p1", "p4"):
        envelope = await redis.hget(keys.provider(name), ProviderFields.ACCESS_TOKEN)
        assert isinstance(envelope, bytes) and tags[name] == token_tag(envelope.decode())
        assert len(tags[name]) == 22
    assert [(m.account_id, m.token_tag) for m in (members[0], members[2])] == [
        ("acc-1", tags["p1"]),
        ("acc-4", tags["p4"]),
    ]


async def test_the_snapshot_comes_only_when_asked_and_the_explanation_without_it(
    redis: Redis, namespace: str
) -> None:
    _, selector, digest = await _two_attempts_p2_disabled(redis, namespace)
    orders = []
    for snapshot in (False, True, False, True):
        selection = await selector.select(digest, now_ms(), "", snapshot=snapshot)
        assert bool(selection.members) == snapshot
        assert [row[0] for row in selection.members] == (["p1", "p3", "p4"] if snapshot else [])
        order = [c.name for c in selection.candidates] + list(selection.passed)
        assert sorted(order) == ["p1", "p3", "p4"]  # every eligible member, once
        assert len(selection.candidates) == 2 and len(selection.passed) == 1
        explained = Decision.model_validate(decision_fields(selection))
        assert [(c.provider, c.reason) for c in explained.candidates] == [
            (order[0], "strategy_order"),
            (order[1], "strategy_order"),
            (order[2], "beyond_attempt_limit"),
            ("p2", "disabled"),
        ]
        orders.append(order)
    assert [o[0] for o in orders] == ["p1", "p3", "p4", "p1"]  # the rotation does not care


async def test_local_routing_rotates_over_what_redis_last_said(
    redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    selector = Selector(redis, keys, Settings(namespace=namespace))
    digest = await _pool(redis, keys, "round-robin")
    await extend_cooldown(redis, keys, "p4", now_ms() + 60_000, "usage_limit", now_ms=now_ms())
    snapshots = Snapshots(10)
    snapshots.record(digest, await selector.select(digest, now_ms(), ""))
    local = LocalRouting(snapshots, max_staleness_s=60, max_attempts=3)
    firsts: Counter[str] = Counter()
    for _ in range(30):
        selection = local.select(digest, now_ms())
        assert selection is not None and selection.fallback
        assert sorted(c.name for c in selection.candidates) == ["p1", "p2", "p3"]
        firsts[selection.candidates[0].name] += 1
    assert firsts == {"p1": 10, "p2": 10, "p3": 10}
    local.cool_down("p1", now_ms() + 60_000)
    selection = local.select(digest, now_ms())
    assert selection is not None
    assert sorted(c.name for c in selection.candidates) == ["p2", "p3"]
    assert selection.quota_wait_ms > 0 and selection.other_wait_ms > 0
