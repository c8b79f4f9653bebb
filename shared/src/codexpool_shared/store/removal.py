"""Deleting a provider: from the registry and, with ``force``, from every pool, all or nothing."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from codexpool_shared.keys import Keys
from codexpool_shared.store.errors import Conflict, NotFound
from codexpool_shared.store.pools import Pool, PoolFields, pool_from_hash
from codexpool_shared.store.providers import Provider, provider_from_hash
from codexpool_shared.store.replies import decode_hash, text


class ProviderInUse(Conflict):
    """A provider cannot be deleted without ``force``: pools list it (``agent_ids``, sorted)."""

    def __init__(self, name: str, agent_ids: list[str]) -> None:
        """Refuse to delete ``name`` because the pools of ``agent_ids`` hold it."""
        super().__init__("name", f"provider {name!r} is in the pools of: {', '.join(agent_ids)}")
        self.name = name
        self.agent_ids = agent_ids


class PoolMemberRemoved(BaseModel):
    """One pool a provider deletion changed: as it was read, and as written (version bumped)."""

    model_config = ConfigDict(frozen=True)

    before: Pool
    after: Pool


class ProviderDeleted(BaseModel):
    """What ``delete_provider`` did: the provider as it was, and each pool changed."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    pools: tuple[PoolMemberRemoved, ...]
    """Sorted by agent id; empty when no pool held the provider."""


DELETE_ATTEMPTS = 8
"""How many times a provider deletion retries after a concurrent change of what it read."""


async def _pools_holding(pipe: Pipeline, keys: Keys, name: str) -> list[Pool]:
    """Under WATCH: watch every agent's pool key, then read those pools; those listing ``name``."""
    agent_ids = sorted(text(a) for a in await pipe.smembers(keys.agents))
    if not agent_ids:
        return []
    await pipe.watch(*(keys.pool(agent_id) for agent_id in agent_ids))
    holding = []
    for agent_id in agent_ids:
        raw = decode_hash(await pipe.hgetall(keys.pool(agent_id)))
        if not raw:
            continue
        pool = pool_from_hash(agent_id, raw)
        if name in pool.providers:
            holding.append(pool)
    return holding


async def delete_provider(
    redis: Redis, keys: Keys, name: str, *, force: bool, attempts: int = DELETE_ATTEMPTS
) -> ProviderDeleted:
    """Delete a provider and, with ``force``, remove it from every pool, in one transaction.

    Optimistic: WATCH the provider, the agent set and every agent's pool, read them, then one
    MULTI/EXEC removes the member from each pool holding it (bumping each ``version``), deletes
    the provider record and its live state. If any watched key changed in between (a pool edited,
    an agent or pool created, the provider re-linked or re-enabled) EXEC writes nothing and the
    whole read is done again, so the outcome is all or nothing: the provider is either still
    registered and in its pools, or gone from every pool and from the registry. Pools left with
    no member stay (as ``remove_member`` leaves them).

    Args:
        redis: The Redis client.
        keys: Key names.
        name: The provider.
        force: Remove it from the pools holding it; without it, such pools refuse the deletion.
        attempts: Transactions tried before giving up on a store that keeps changing.

    Returns:
        The provider as deleted and each pool changed (before, and after with its new version).

    Raises:
        NotFound: The provider does not exist.
        ProviderInUse: ``force`` is false and pools hold the provider (nothing is written).
        Conflict: The pools kept changing for ``attempts`` tries (nothing is written).
    """
    provider_key = keys.provider(name)
    for _ in range(attempts):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(provider_key, keys.agents)
                raw = await pipe.hgetall(provider_key)
                if not raw:
                    raise NotFound("provider", name)
                provider = provider_from_hash(decode_hash(raw))
                holding = await _pools_holding(pipe, keys, name)
                if holding and not force:
                    raise ProviderInUse(name, [p.agent_id for p in holding])
                pipe.multi()  # type: ignore[no-untyped-call]
                for pool in holding:
                    kept = [m for m in pool.providers if m != name]
                    pipe.hset(
                        keys.pool(pool.agent_id), PoolFields.PROVIDERS, orjson.dumps(kept).decode()
                    )
                    pipe.hincrby(keys.pool(pool.agent_id), PoolFields.VERSION, 1)
                pipe.delete(provider_key, keys.live(name))
                pipe.srem(keys.providers, name)
                replies = await pipe.execute()
            except WatchError:
                continue
        changed = tuple(
            PoolMemberRemoved(
                before=pool,
                after=pool.model_copy(
                    update={
                        "providers": tuple(m for m in pool.providers if m != name),
                        "version": int(replies[2 * i + 1]),
                    }
                ),
            )
            for i, pool in enumerate(holding)
        )
        return ProviderDeleted(provider=provider, pools=changed)
    raise Conflict("name", f"the pools holding provider {name!r} kept changing; retry")
