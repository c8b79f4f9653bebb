"""Agent pools (docs/SPEC.md section 4): strategy, ordered members, version.

``Keys.pool(agent)`` is a hash ``{strategy, providers (JSON list, first = primary), version}``
(:class:`PoolFields`).
Every change runs in one Lua script: it validates the members against the registry and bumps
``version`` atomically with the write, so a change is never half-applied and the router's next
selection (one script reading the same hash) sees it on every replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, get_args

import orjson
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from codexpool_shared.events import Strategy
from codexpool_shared.keys import Keys
from codexpool_shared.store.errors import Conflict, InvalidField, NotFound
from codexpool_shared.store.providers import ProviderFields
from codexpool_shared.store.replies import optional_int, text
from codexpool_shared.store.scripts import render

STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
"""Known strategy names."""


class PoolFields:
    """Field names of the pool hash (``Keys.pool``); its scripts are rendered from these."""

    STRATEGY: Final = "strategy"
    PROVIDERS: Final = "providers"
    VERSION: Final = "version"


_MUTATE = render(
    """
local op, prefix, suffix = ARGV[1], ARGV[4], ARGV[5]
if redis.call('EXISTS', KEYS[2]) == 0 then return {'err', 'agent', 'agent_id', ''} end
local function check(name, field)
  local status = redis.call('HGET', prefix .. name .. suffix, '{{ProviderFields.STATUS}}')
  if not status then return {'err', 'unknown', field, name} end
  if status == 'disabled' then return {'err', 'disabled', field, name} end
  return nil
end
local strategy = redis.call('HGET', KEYS[1], '{{PoolFields.STRATEGY}}')
local members = cjson.decode(redis.call('HGET', KEYS[1], '{{PoolFields.PROVIDERS}}') or '[]')
if op == 'put' then
  strategy = ARGV[2]
  members = cjson.decode(ARGV[3])
  for i, name in ipairs(members) do
    local bad = check(name, 'providers[' .. (i - 1) .. ']')
    if bad then return bad end
  end
elseif op == 'add' then
  if not strategy then return {'err', 'pool', 'agent_id', ''} end
  for _, name in ipairs(members) do
    if name == ARGV[3] then return {'err', 'duplicate', 'provider', ARGV[3]} end
  end
  local bad = check(ARGV[3], 'provider')
  if bad then return bad end
  local pos = tonumber(ARGV[6])
  if pos and pos < #members then table.insert(members, pos + 1, ARGV[3])
  else table.insert(members, ARGV[3]) end
elseif op == 'remove' then
  if not strategy then return {'err', 'pool', 'agent_id', ''} end
  local kept, found = {}, false
  for _, name in ipairs(members) do
    if name == ARGV[3] then found = true else table.insert(kept, name) end
  end
  if not found then return {'err', 'member', 'provider', ARGV[3]} end
  members = kept
end
local encoded = (#members == 0) and '[]' or cjson.encode(members)
redis.call('HSET', KEYS[1], '{{PoolFields.STRATEGY}}', strategy,
  '{{PoolFields.PROVIDERS}}', encoded)
local version = redis.call('HINCRBY', KEYS[1], '{{PoolFields.VERSION}}', 1)
return {'ok', tostring(version), strategy, encoded}
""",
    PoolFields,
    ProviderFields,
)


class Pool(BaseModel):
    """An agent's routing configuration."""

    model_config = ConfigDict(frozen=True)

    agent_id: str
    strategy: Strategy
    providers: tuple[str, ...]
    """Members in order; the first is the primary."""
    version: int


_STRATEGY_BY_NAME: Final[dict[str, Strategy]] = {name: name for name in STRATEGIES}


def parse_strategy(value: str) -> Strategy:
    """A strategy name as read back from Redis (the router calls this on every request).

    Raises:
        ValueError: A name this version does not know.
    """
    try:
        return _STRATEGY_BY_NAME[value]
    except KeyError:
        raise ValueError(f"unknown strategy {value!r}") from None


def pool_from_hash(agent_id: str, fields: Mapping[str, str]) -> Pool:
    """A pool from its decoded hash."""
    return Pool(
        agent_id=agent_id,
        strategy=parse_strategy(fields[PoolFields.STRATEGY]),
        providers=tuple(orjson.loads(fields.get(PoolFields.PROVIDERS) or "[]")),
        version=optional_int(fields.get(PoolFields.VERSION)) or 0,
    )


def validate_pool(strategy: str, providers: list[str] | tuple[str, ...]) -> None:
    """Reject an unknown strategy, an empty pool or a duplicate member (names the field)."""
    if strategy not in STRATEGIES:
        raise InvalidField("strategy", f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    if not providers:
        raise InvalidField("providers", "a pool needs at least one provider")
    seen: set[str] = set()
    for index, name in enumerate(providers):
        if not isinstance(name, str) or not name:
            raise InvalidField(f"providers[{index}]", "must be a provider name")
        if name in seen:
            raise InvalidField(f"providers[{index}]", f"{name!r} is listed twice")
        seen.add(name)


async def _mutate(redis: Redis, keys: Keys, agent_id: str, op: str, *args: str) -> Pool:
    prefix, suffix = keys.provider("\0").split("\0")
    padded = [*args, "", "", ""][:3]
    reply = await redis.register_script(_MUTATE)(
        keys=[keys.pool(agent_id), keys.agent(agent_id)],
        args=[op, padded[0], padded[1], prefix, suffix, padded[2]],
    )
    status, *rest = (text(x) for x in reply)
    if status == "ok":
        version, strategy, providers = rest
        return Pool(
            agent_id=agent_id,
            strategy=parse_strategy(strategy),
            providers=tuple(orjson.loads(providers)),
            version=int(version),
        )
    code, field, name = rest
    if code == "agent":
        raise NotFound("agent", agent_id)
    if code == "pool":
        raise NotFound("pool", agent_id)
    if code == "unknown":
        raise InvalidField(field, f"provider {name!r} is not registered")
    if code == "disabled":
        raise InvalidField(field, f"provider {name!r} is disabled")
    if code == "duplicate":
        raise Conflict(field, f"{name!r} is already in the pool")
    raise NotFound("pool member", name)


async def put_pool(
    redis: Redis, keys: Keys, agent_id: str, strategy: str, providers: list[str] | tuple[str, ...]
) -> Pool:
    """Replace the agent's pool.

    Raises:
        InvalidField: Unknown strategy, empty, duplicate, unregistered or disabled member.
        NotFound: The agent does not exist.
    """
    validate_pool(strategy, providers)
    return await _mutate(
        redis, keys, agent_id, "put", strategy, orjson.dumps(list(providers)).decode()
    )


async def add_member(
    redis: Redis, keys: Keys, agent_id: str, provider: str, *, position: int | None = None
) -> Pool:
    """Add one member (at the end, or at ``position``).

    Raises:
        InvalidField: Unregistered or disabled provider.
        Conflict: Already a member.
        NotFound: The agent or its pool does not exist.
    """
    return await _mutate(
        redis, keys, agent_id, "add", "", provider, "" if position is None else str(position)
    )


async def remove_member(redis: Redis, keys: Keys, agent_id: str, provider: str) -> Pool:
    """Remove one member; the next request on every replica no longer goes to it.

    Raises:
        NotFound: The agent, its pool or the member does not exist.
    """
    return await _mutate(redis, keys, agent_id, "remove", "", provider)


async def get_pool(redis: Redis, keys: Keys, agent_id: str) -> Pool:
    """The agent's pool; raises ``NotFound``."""
    raw = await redis.hgetall(keys.pool(agent_id))
    if not raw:
        raise NotFound("pool", agent_id)
    return pool_from_hash(agent_id, {text(k): text(v) for k, v in raw.items()})
