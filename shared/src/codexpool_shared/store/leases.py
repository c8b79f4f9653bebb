"""Per-provider concurrency caps: leases shared by every router replica.

A provider with ``max_concurrent`` (:attr:`ProviderFields.MAX_CONCURRENT`) has a sorted set at
``Keys.provider_leases(name)``: one member per request in flight there, scored by when the lease
expires (epoch ms). The selection script drops expired members, counts the rest against the cap
and takes a lease for its first candidate in the same call; a failover to another capped member
takes one with :func:`acquire`. The router renews the leases it holds while their requests run
(:func:`renew`) and removes each at the end (:func:`release`). A router that dies mid-stream
stops renewing, so its leases expire and free their slots after at most one lease TTL.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from codexpool_shared.keys import Keys
from codexpool_shared.store.errors import NotFound
from codexpool_shared.store.providers import ProviderFields
from codexpool_shared.store.scripts import LuaScript, render

_SET_CAP = render(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], '{{ProviderFields.MAX_CONCURRENT}}')
else redis.call('HSET', KEYS[1], '{{ProviderFields.MAX_CONCURRENT}}', ARGV[1]) end
return 1
""",
    ProviderFields,
)

# KEYS[1] leases; ARGV now ms, cap, lease id, expiry ms. 1 when the lease is taken.
_ACQUIRE = LuaScript.of(
    """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
return 1
"""
)


async def set_max_concurrent(redis: Redis, keys: Keys, name: str, cap: int | None) -> None:
    """Set (or with ``None`` remove) the provider's cap; raises ``NotFound``."""
    done = await redis.eval(_SET_CAP, 1, keys.provider(name), "" if cap is None else str(cap))
    if not done:
        raise NotFound("provider", name)


async def acquire(
    redis: Redis, keys: Keys, provider: str, lease_id: str, cap: int, now_ms: int, ttl_ms: int
) -> bool:
    """Take a lease on ``provider`` if fewer than ``cap`` unexpired ones are held."""
    args = (now_ms, cap, lease_id, now_ms + ttl_ms)
    return bool(await redis.eval(_ACQUIRE.source, 1, keys.provider_leases(provider), *args))


async def renew(redis: Redis, keys: Keys, held: Iterable[tuple[str, str]], expires_ms: int) -> None:
    """Push the expiry of each held ``(provider, lease id)`` to ``expires_ms``.

    Only leases that still exist: one that expired meanwhile is not brought back.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for provider, lease_id in held:
            pipe.zadd(keys.provider_leases(provider), {lease_id: expires_ms}, xx=True)
        await pipe.execute()


async def release(redis: Redis, keys: Keys, provider: str, lease_id: str) -> None:
    """Free a lease."""
    await redis.zrem(keys.provider_leases(provider), lease_id)


async def in_flight(redis: Redis, keys: Keys, provider: str, now_ms: int) -> int:
    """Unexpired leases on ``provider``: its requests in flight across the fleet."""
    return int(await redis.zcount(keys.provider_leases(provider), f"({now_ms}", "+inf"))
