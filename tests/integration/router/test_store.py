"""The pool store against the real Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from codexpool_shared.keys import Keys
from codexpool_shared.store import (
    MAX_COOLDOWN_MS,
    Conflict,
    InvalidField,
    NotFound,
    ProviderInUse,
    add_member,
    create_agent,
    delete_provider,
    extend_cooldown,
    get_live,
    get_pool,
    get_provider,
    put_pool,
    read_credentials,
    record_failure,
    record_success,
    register_provider,
    remove_member,
    resolve_agent_key,
    set_provider_status,
    write_tokens,
)
from codexpool_shared.store import removal as removal_store
from codexpool_shared.store.pools import Pool
from tests.integration.router.helpers import auth_json, keyring


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace)


async def test_register_provider_reads_claims_and_encrypts(redis: Redis, keys: Keys) -> None:
    ring = keyring()
    doc = auth_json("acc-1", email="one@example.com", plan="pro", exp=2_000_000_000)
    provider = await register_provider(redis, keys, ring, "p1", doc)
    assert (provider.account_id, provider.email, provider.plan_type) == (
        "acc-1",
        "one@example.com",
        "pro",
    )
    assert provider.access_expires_at == 2_000_000_000
    assert provider.status == "active" and provider.credential_version == 1
    raw = await redis.hgetall(keys.provider("p1"))
    for field in ("access_token", "refresh_token", "id_token"):
        stored = raw[field.encode()]
        envelope = stored.decode() if isinstance(stored, bytes) else stored
        assert envelope.startswith("v1:")
        assert ring.decrypt(envelope, record="p1", field=field) == doc["tokens"][field]
    with pytest.raises(Conflict):
        await register_provider(redis, keys, ring, "p1", doc)
    with pytest.raises(InvalidField) as bad:
        await register_provider(redis, keys, ring, "p2", {"tokens": {"access_token": "x"}})
    assert bad.value.field == "auth_json.tokens.refresh_token"


async def test_pool_validation_and_versions(redis: Redis, keys: Keys) -> None:
    ring = keyring()
    for n in (1, 2, 3):
        await register_provider(redis, keys, ring, f"p{n}", auth_json(f"acc-{n}"))
    _, api_key = await create_agent(redis, keys, "agent")
    assert await resolve_agent_key(redis, keys, api_key) == "agent"
    pool = await put_pool(redis, keys, "agent", "round-robin", ["p1", "p2"])
    assert pool.version == 1 and pool.providers == ("p1", "p2")
    for strategy, members, field in (
        ("fastest", ["p1"], "strategy"),
        ("round-robin", [], "providers"),
        ("round-robin", ["p1", "p1"], "providers[1]"),
        ("round-robin", ["p1", "nope"], "providers[1]"),
    ):
        with pytest.raises(InvalidField) as bad:
            await put_pool(redis, keys, "agent", strategy, members)
        assert bad.value.field == field
    await set_provider_status(redis, keys, "p3", "disabled")
    with pytest.raises(InvalidField, match="disabled"):
        await add_member(redis, keys, "agent", "p3")
    await set_provider_status(redis, keys, "p3", "active")
    pool = await add_member(redis, keys, "agent", "p3", position=0)
    assert pool.providers == ("p3", "p1", "p2") and pool.version == 2
    with pytest.raises(Conflict):
        await add_member(redis, keys, "agent", "p3")
    pool = await remove_member(redis, keys, "agent", "p1")
    assert pool.providers == ("p3", "p2") and pool.version == 3
    assert (await get_pool(redis, keys, "agent")) == pool
    with pytest.raises(NotFound):
        await put_pool(redis, keys, "ghost", "round-robin", ["p1"])


async def test_cooldown_is_extend_only_and_bounded(redis: Redis, keys: Keys) -> None:
    now = int(time.time() * 1000)
    assert await extend_cooldown(redis, keys, "p", now + 60_000, "usage_limit", now_ms=now) == (
        now + 60_000
    )
    assert await extend_cooldown(redis, keys, "p", now + 1_000, "rate_limited", now_ms=now) == (
        now + 60_000
    )
    live = await get_live(redis, keys, "p")
    assert live.cooldown_reason == "usage_limit"
    far = now + 10 * MAX_COOLDOWN_MS
    assert await extend_cooldown(redis, keys, "p", far, "usage_limit", now_ms=now) == (
        now + MAX_COOLDOWN_MS
    )


async def test_circuit_opens_after_threshold_and_backs_off(redis: Redis, keys: Keys) -> None:
    async def fail(probe: bool = False) -> int:
        return await record_failure(
            redis,
            keys,
            "p",
            now_ms=0,
            started_ms=0,
            threshold=3,
            base_ms=1000,
            max_ms=3000,
            probe=probe,
        )

    assert [await fail(), await fail(), await fail()] == [0, 0, 1000]
    assert [await fail(probe=True), await fail(probe=True)] == [2000, 3000]
    await record_success(redis, keys, "p", now_ms=5000, probe=True)
    live = await get_live(redis, keys, "p")
    assert (live.circuit_open_until_ms, live.circuit_opens, live.failures) == (0, 0, 0)
    assert live.circuit_closed_at_ms == 5000


async def test_late_failures_do_not_escalate_the_backoff(redis: Redis, keys: Keys) -> None:
    """Attempts in flight when the circuit opened fail later: open, half-open or closed
    again, their failures neither re-open it nor start a new streak; the probe's does."""

    async def fail(now: int, started: int, probe: bool = False) -> int:
        return await record_failure(
            redis,
            keys,
            "p",
            now_ms=now,
            started_ms=started,
            threshold=2,
            base_ms=30_000,
            max_ms=300_000,
            probe=probe,
        )

    # Four requests start at 0 and fail one by one: the second opens for 30 s.
    assert [await fail(1000, 0), await fail(1100, 0)] == [0, 31_100]
    assert [await fail(1200, 0), await fail(1300, 0)] == [0, 0]
    live = await get_live(redis, keys, "p")
    assert (live.circuit_opens, live.circuit_opened_at_ms, live.failures) == (1, 1100, 0)
    assert live.circuit_open_until_ms == 31_100
    # Half-open: a straggler is ignored, the probe's own failure re-opens for 60 s.
    assert await fail(40_000, 0) == 0
    assert await fail(40_500, 40_000, probe=True) == 100_500
    # Closed by a probe; a straggler from before the last opening still does not count.
    await record_success(redis, keys, "p", now_ms=101_000, probe=True)
    assert [await fail(102_000, 35_000), await fail(102_100, 35_000)] == [0, 0]
    assert (await get_live(redis, keys, "p")).failures == 0
    # Fresh failures do, and the backoff starts again at the base.
    assert [await fail(103_000, 102_500), await fail(103_100, 102_600)] == [0, 133_100]


async def test_token_writes_compare_and_set_on_version(redis: Redis, keys: Keys) -> None:
    ring = keyring()
    await register_provider(redis, keys, ring, "p", auth_json("acc"))
    fresh = auth_json("acc")["tokens"]
    assert await write_tokens(redis, keys, ring, "p", expected_version=1, tokens=fresh) == 2
    stale = auth_json("acc")["tokens"]
    assert await write_tokens(redis, keys, ring, "p", expected_version=1, tokens=stale) is None
    creds = await read_credentials(redis, keys, "p")
    assert creds.credential_version == 2
    assert (
        ring.decrypt(creds.access_token, record="p", field="access_token")
        == (fresh["access_token"])
    )
    assert await set_provider_status(redis, keys, "p", "needs_reauth", expected_version=1) is None
    assert await set_provider_status(redis, keys, "p", "needs_reauth", expected_version=2) == (
        "active"
    )
    assert (await get_provider(redis, keys, "p")).status == "needs_reauth"


async def _provider_gone_everywhere(redis: Redis, keys: Keys, name: str) -> None:
    with pytest.raises(NotFound):
        await get_provider(redis, keys, name)
    assert not await redis.sismember(keys.providers, name)
    assert not await redis.exists(keys.live(name))
    for agent_id in await redis.smembers(keys.agents):
        pool = await get_pool(
            redis, keys, agent_id.decode() if isinstance(agent_id, bytes) else agent_id
        )
        assert name not in pool.providers


async def _two_pools_and_a_bystander(redis: Redis, keys: Keys) -> None:
    ring = keyring()
    for n in (1, 2):
        await register_provider(redis, keys, ring, f"p{n}", auth_json(f"acc-{n}"))
    for agent_id, members in (("a", ["p1", "p2"]), ("b", ["p2", "p1"]), ("c", ["p2"])):
        await create_agent(redis, keys, agent_id)
        await put_pool(redis, keys, agent_id, "round-robin", members)
    await redis.hset(keys.live("p1"), "failures", 1)


async def test_forced_provider_delete_leaves_every_pool_in_one_step(
    redis: Redis, keys: Keys
) -> None:
    await _two_pools_and_a_bystander(redis, keys)
    with pytest.raises(NotFound):
        await delete_provider(redis, keys, "ghost", force=True)
    with pytest.raises(ProviderInUse) as in_use:
        await delete_provider(redis, keys, "p1", force=False)
    assert in_use.value.agent_ids == ["a", "b"] and isinstance(in_use.value, Conflict)
    assert (await get_provider(redis, keys, "p1")).name == "p1"
    assert [(await get_pool(redis, keys, a)).version for a in "abc"] == [1, 1, 1]

    deleted = await delete_provider(redis, keys, "p1", force=True)
    assert deleted.provider.name == "p1"
    assert [(c.before.agent_id, c.before.version) for c in deleted.pools] == [("a", 1), ("b", 1)]
    assert [(c.after.providers, c.after.version) for c in deleted.pools] == [
        (("p2",), 2),
        (("p2",), 2),
    ]
    for change in deleted.pools:
        assert await get_pool(redis, keys, change.after.agent_id) == change.after
    assert (await get_pool(redis, keys, "c")).version == 1  # a pool without it is untouched
    await _provider_gone_everywhere(redis, keys, "p1")

    # The last member goes too, leaving empty pools (as removing a member one by one does).
    emptied = await delete_provider(redis, keys, "p2", force=True)
    assert [(c.after.agent_id, c.after.providers) for c in emptied.pools] == [
        ("a", ()),
        ("b", ()),
        ("c", ()),
    ]
    await _provider_gone_everywhere(redis, keys, "p2")
    # Without pools holding it, no force is needed.
    await register_provider(redis, keys, keyring(), "p3", auth_json("acc-3"))
    assert (await delete_provider(redis, keys, "p3", force=False)).pools == ()


async def test_provider_delete_reads_again_when_pools_change_before_its_write(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the read and the write another client adds the provider to a pool, then creates
    an agent whose pool holds it: each time the transaction writes nothing and starts over, so
    the provider leaves those pools too rather than being left in them unregistered."""
    await _two_pools_and_a_bystander(redis, keys)
    read = removal_store._pools_holding
    concurrent = [
        lambda: add_member(redis, keys, "c", "p1"),
        lambda: _agent_with_pool(redis, keys, "d", ["p1"]),
    ]
    reads = 0

    async def read_then_change(*args: Any) -> list[Pool]:
        nonlocal reads
        reads += 1
        pools = await read(*args)
        if concurrent:
            await concurrent.pop(0)()
        return pools

    monkeypatch.setattr(removal_store, "_pools_holding", read_then_change)
    deleted = await delete_provider(redis, keys, "p1", force=True)
    assert reads == 3
    assert [(c.after.agent_id, c.after.providers, c.after.version) for c in deleted.pools] == [
        ("a", ("p2",), 2),
        ("b", ("p2",), 2),
        ("c", ("p2",), 3),
        ("d", (), 2),
    ]
    await _provider_gone_everywhere(redis, keys, "p1")


async def test_provider_delete_that_keeps_conflicting_writes_nothing(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool edited between every read and write: after its attempts the deletion gives up
    with a Conflict and nothing of it is applied (no pool lost the provider, it is registered)."""
    await _two_pools_and_a_bystander(redis, keys)
    read = removal_store._pools_holding

    async def read_then_change(*args: Any) -> list[Pool]:
        pools = await read(*args)
        await put_pool(redis, keys, "c", "round-robin", ["p2"])
        return pools

    monkeypatch.setattr(removal_store, "_pools_holding", read_then_change)
    with pytest.raises(Conflict, match="kept changing"):
        await delete_provider(redis, keys, "p1", force=True, attempts=3)
    assert (await get_provider(redis, keys, "p1")).name == "p1"
    assert await redis.sismember(keys.providers, "p1")
    assert await redis.exists(keys.live("p1"))
    assert [(await get_pool(redis, keys, a)).providers for a in "ab"] == [
        ("p1", "p2"),
        ("p2", "p1"),
    ]
    assert [(await get_pool(redis, keys, a)).version for a in "abc"] == [1, 1, 4]


async def _agent_with_pool(redis: Redis, keys: Keys, agent_id: str, members: list[str]) -> Pool:
    await create_agent(redis, keys, agent_id)
    return await put_pool(redis, keys, agent_id, "round-robin", members)
