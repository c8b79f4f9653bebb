"""The pool store against the real Redis."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from codexpool_shared.keys import Keys
from codexpool_shared.store import (
    MAX_COOLDOWN_MS,
    Conflict,
    InvalidField,
    NotFound,
    add_member,
    create_agent,
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
            redis, keys, "p", now_ms=0, threshold=3, base_ms=1000, max_ms=3000, probe=probe
        )

    assert [await fail(), await fail(), await fail()] == [0, 0, 1000]
    assert [await fail(probe=True), await fail(probe=True)] == [2000, 3000]
    await record_success(redis, keys, "p", now_ms=5000, probe=True)
    live = await get_live(redis, keys, "p")
    assert (live.circuit_open_until_ms, live.circuit_opens, live.failures) == (0, 0, 0)
    assert live.circuit_closed_at_ms == 5000


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
