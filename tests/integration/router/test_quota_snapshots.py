"""Quota snapshots against the real Redis: the newest observation wins, whatever order the
router's flush and Refresh Live State write in (issue 11)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.livewriter import LiveWriter
from codexpool_router.metrics import Metrics
from codexpool_shared.keys import Keys
from codexpool_shared.redis import open_redis
from codexpool_shared.store import (
    QuotaSnapshot,
    QuotaWindow,
    extend_cooldown,
    get_live,
    record_failure,
    write_quota,
    write_quotas,
)
from codexpool_shared.usage import parse_usage
from tests.integration.conftest import RedisTarget


def _snapshot(used: float, observed_at_ms: int) -> QuotaSnapshot:
    return QuotaSnapshot(
        primary=QuotaWindow(used_percent=used, window_minutes=300, resets_at=1_770_000_000),
        plan_type="plus",
        observed_at_ms=observed_at_ms,
    )


async def _used(redis: Redis, keys: Keys, provider: str) -> float | None:
    quota = (await get_live(redis, keys, provider)).quota
    return quota.primary.used_percent if quota and quota.primary else None


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace)


async def test_an_older_snapshot_written_later_is_kept_out(redis: Redis, keys: Keys) -> None:
    assert await write_quota(redis, keys, "p", _snapshot(61, 2_000))
    assert not await write_quota(redis, keys, "p", _snapshot(40, 1_999))
    live = await get_live(redis, keys, "p")
    assert live.quota == _snapshot(61, 2_000)
    assert await write_quota(redis, keys, "p", _snapshot(62, 2_001))
    assert await _used(redis, keys, "p") == 62
    # The same observation again (a retried write) is no older: it is stored.
    assert await write_quota(redis, keys, "p", _snapshot(63, 2_001))
    assert await _used(redis, keys, "p") == 63


async def test_the_quota_write_leaves_the_other_live_fields_alone(redis: Redis, keys: Keys) -> None:
    await extend_cooldown(redis, keys, "p", 90_000, "usage_limit", now_ms=1_000)
    assert await write_quota(redis, keys, "p", _snapshot(100, 5_000))
    live = await get_live(redis, keys, "p")
    assert (live.cooldown_until_ms, live.cooldown_reason) == (90_000, "usage_limit")
    assert live.quota == _snapshot(100, 5_000)


async def test_fresh_capacity_ends_a_quota_cooldown_that_started_before_it(
    redis: Redis, keys: Keys
) -> None:
    """Issue 19: the upstream reset early; an observation newer than the cooldown that shows
    capacity ends it at once, for every replica (they all read this hash when they select)."""
    await extend_cooldown(redis, keys, "p", 90_000, "usage_limit", now_ms=1_000)
    # Observed before the cooldown started: it proves nothing about the account now.
    assert await write_quota(redis, keys, "p", _snapshot(0, 999))
    assert (await get_live(redis, keys, "p")).cooldown_until_ms == 90_000
    # Newer, but still full: stays out.
    assert (await write_quotas(redis, keys, {"p": _snapshot(100, 2_000)})).cleared == set()
    assert (await get_live(redis, keys, "p")).cooldown_until_ms == 90_000
    # A second 429 reaffirms the cooldown without extending it: older observations stay moot.
    await extend_cooldown(redis, keys, "p", 90_000, "usage_limit", now_ms=3_000)
    assert (await write_quotas(redis, keys, {"p": _snapshot(5, 2_500)})).cleared == set()
    writes = await write_quotas(redis, keys, {"p": _snapshot(5, 3_001)})
    assert writes.stored == writes.cleared == {"p"}
    live = await get_live(redis, keys, "p")
    assert live.cooldown_until_ms == 0 and live.quota == _snapshot(5, 3_001)


async def test_fresh_capacity_leaves_error_cooldowns_and_circuits_alone(
    redis: Redis, keys: Keys
) -> None:
    await extend_cooldown(redis, keys, "rl", 90_000, "rate_limited", now_ms=1_000)
    await record_failure(
        redis,
        keys,
        "c",
        now_ms=1_000,
        started_ms=1_000,
        threshold=1,
        base_ms=60_000,
        max_ms=60_000,
    )
    writes = await write_quotas(redis, keys, {"rl": _snapshot(1, 5_000), "c": _snapshot(1, 5_000)})
    assert writes.cleared == set()
    assert (await get_live(redis, keys, "rl")).cooldown_until_ms == 90_000
    assert (await get_live(redis, keys, "c")).circuit_open_until_ms == 61_000
    # A window without a used percent, or none at all, shows no capacity either.
    await extend_cooldown(redis, keys, "q", 90_000, "usage_limit", now_ms=1_000)
    empty = QuotaSnapshot(plan_type="plus", observed_at_ms=5_000)
    assert (await write_quotas(redis, keys, {"q": empty})).cleared == set()
    assert (await get_live(redis, keys, "q")).cooldown_until_ms == 90_000


async def test_a_batch_stores_each_provider_on_its_own_merits(redis: Redis, keys: Keys) -> None:
    await write_quotas(redis, keys, {"a": _snapshot(50, 3_000), "b": _snapshot(50, 3_000)})
    written = await write_quotas(
        redis, keys, {"a": _snapshot(20, 2_000), "b": _snapshot(70, 4_000), "c": _snapshot(1, 1)}
    )
    assert written.stored == {"b", "c"}
    assert [await _used(redis, keys, p) for p in "abc"] == [50, 70, 1]


async def test_a_batch_survives_an_empty_script_cache(redis: Redis, keys: Keys) -> None:
    """A restarted or failed-over Redis has forgotten the script: the batch EVALs it (every
    script user here reloads after NOSCRIPT, so the shared server's cache may be flushed, as
    test_selection does)."""
    await write_quota(redis, keys, "a", _snapshot(30, 2_000))
    await redis.script_flush()
    written = await write_quotas(redis, keys, {"a": _snapshot(20, 1_000), "b": _snapshot(5, 1)})
    assert written.stored == {"b"}
    assert [await _used(redis, keys, p) for p in "ab"] == [30, 5]


async def test_the_routers_late_flush_never_replaces_a_fresher_refresh(
    redis: Redis, keys: Keys, namespace: str
) -> None:
    """The flake of issue 11: the router read x-codex-* headers (61 % used), Refresh Live State
    then read /wham/usage (75 %) and wrote first; the router's flush came after."""
    settings = Settings(namespace=namespace, quota_flush_s=3600)
    writer = LiveWriter(redis, keys, settings, Metrics(CollectorRegistry()))
    writer.quota("p", {"x-codex-primary-used-percent": "61", "x-codex-primary-reset-at": "9"})
    usage = {"rate_limit": {"primary_window": {"used_percent": 75, "reset_at": 9}}}
    refreshed = parse_usage(usage, observed_at_ms=time.time_ns() // 1_000_000 + 1)
    assert await write_quota(redis, keys, "p", refreshed)
    await writer.close()  # flushes what it holds
    assert await _used(redis, keys, "p") == 75
    # A later answer through the router is newer than the refresh, and replaces it.
    writer.quota("p", {"x-codex-primary-used-percent": "76", "x-codex-primary-reset-at": "9"})
    await writer.close()
    assert await _used(redis, keys, "p") == 76


async def test_racing_flushes_and_refreshes_leave_the_newest_observation(
    redis: Redis, keys: Keys, redis_target: RedisTarget
) -> None:
    # Router flushes (batches over three providers) and Refresh Live State writes (one provider)
    # on separate connections, interleaved by the event loop in a shuffled order: whatever lands
    # last, each provider ends with its newest observation.
    rng = random.Random(11)
    providers = ("p1", "p2", "p3")
    observations = {p: rng.sample(range(1_000, 1_400), 120) for p in providers}
    clients = [await open_redis(redis_target.settings(keys.namespace)) for _ in range(4)]

    async def flusher(client: Redis, round_: int) -> None:
        await write_quotas(
            client,
            keys,
            {
                p: _snapshot(observations[p][round_] / 100, observations[p][round_])
                for p in providers
            },
        )

    async def refresher(client: Redis, provider: str, round_: int) -> None:
        await write_quota(
            client,
            keys,
            provider,
            _snapshot(observations[provider][round_] / 100, observations[provider][round_]),
        )

    writes = [flusher(clients[r % 2], r) for r in range(0, 120, 2)]
    writes += [refresher(clients[2 + r % 2], providers[r % 3], r) for r in range(1, 120, 2)]
    rng.shuffle(writes)
    try:
        await asyncio.gather(*writes)
    finally:
        for client in clients:
            await client.aclose()
    for provider in providers:
        written = [
            observations[provider][r]
            for r in range(120)
            if r % 2 == 0 or providers[r % 3] == provider
        ]
        live = await get_live(redis, keys, provider)
        assert live.quota is not None
        assert live.quota.observed_at_ms == max(written), provider
