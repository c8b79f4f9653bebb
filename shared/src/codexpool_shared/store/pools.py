"""Agent pools (docs/SPEC.md section 4): strategy, ordered members, version.

``Keys.pool(agent)`` is a hash ``{strategy, providers (JSON list, first = primary), version,
priorities (JSON object member -> priority; absent members are normal), prefer_earliest_reset
("1" or absent)}`` (:class:`PoolFields`).
Every change runs in one Lua script: it validates the members against the registry and bumps
``version`` atomically with the write, so a change is never half-applied and the router's next
selection (one script reading the same hash) sees it on every replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

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

Priority = Literal["burn_first", "normal", "preserve"]
"""A member's priority within its pool: ``burn_first`` members are tried before ``normal`` ones,
``preserve`` members only when no other member is eligible (every strategy, ``select.lua``)."""
PRIORITIES: tuple[Priority, ...] = get_args(Priority)


class PoolFields:
    """Field names of the pool hash (``Keys.pool``); its scripts are rendered from these."""

    STRATEGY: Final = "strategy"
    PROVIDERS: Final = "providers"
    VERSION: Final = "version"
    PRIORITIES: Final = "priorities"
    EARLIEST_RESET: Final = "prefer_earliest_reset"


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
local priorities = redis.call('HGET', KEYS[1], '{{PoolFields.PRIORITIES}}') or '{}'
local earliest = redis.call('HGET', KEYS[1], '{{PoolFields.EARLIEST_RESET}}') or ''
if op == 'put' then
  strategy = ARGV[2]
  members = cjson.decode(ARGV[3])
  priorities, earliest = ARGV[7], ARGV[8]
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
  local by_member = cjson.decode(priorities)
  if by_member[ARGV[3]] then
    by_member[ARGV[3]] = nil
    priorities = next(by_member) and cjson.encode(by_member) or '{}'
  end
end
local encoded = (#members == 0) and '[]' or cjson.encode(members)
redis.call('HSET', KEYS[1], '{{PoolFields.STRATEGY}}', strategy,
  '{{PoolFields.PROVIDERS}}', encoded)
if priorities == '{}' then redis.call('HDEL', KEYS[1], '{{PoolFields.PRIORITIES}}')
else redis.call('HSET', KEYS[1], '{{PoolFields.PRIORITIES}}', priorities) end
if earliest == '' then redis.call('HDEL', KEYS[1], '{{PoolFields.EARLIEST_RESET}}')
else redis.call('HSET', KEYS[1], '{{PoolFields.EARLIEST_RESET}}', earliest) end
local version = redis.call('HINCRBY', KEYS[1], '{{PoolFields.VERSION}}', 1)
return {'ok', tostring(version), strategy, encoded, priorities, earliest}
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
    priorities: Mapping[str, Priority] = {}
    """Members whose priority is not ``normal``."""
    prefer_earliest_reset: bool = False
    """quota-aware: the member whose quota window resets first goes first (its quota would
    otherwise be lost at the reset); remaining quota breaks ties."""


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
        priorities=_priorities(fields.get(PoolFields.PRIORITIES)),
        prefer_earliest_reset=bool(fields.get(PoolFields.EARLIEST_RESET)),
    )


def _priorities(raw: str | None) -> dict[str, Priority]:
    return {k: v for k, v in orjson.loads(raw or "{}").items() if v in PRIORITIES and v != "normal"}


def validate_pool(
    strategy: str,
    providers: list[str] | tuple[str, ...],
    priorities: Mapping[str, str] | None = None,
    prefer_earliest_reset: bool = False,
) -> None:
    """Reject a pool that cannot be stored, naming the field.

    That is an unknown strategy, an empty pool, a duplicate member, a priority for a name that
    is not a member or an unknown priority, and ``prefer_earliest_reset`` outside quota-aware.
    """
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
    for name, priority in (priorities or {}).items():
        if name not in seen:
            raise InvalidField(f"priorities.{name}", f"{name!r} is not a member of the pool")
        if priority not in PRIORITIES:
            raise InvalidField(f"priorities.{name}", f"unknown priority; use one of {PRIORITIES}")
    if prefer_earliest_reset and strategy != "quota-aware":
        raise InvalidField("prefer_earliest_reset", "applies to the quota-aware strategy only")


async def _mutate(redis: Redis, keys: Keys, agent_id: str, op: str, *args: str) -> Pool:
    prefix, suffix = keys.provider("\0").split("\0")
    padded = [*args, "", "", "", "", ""][:5]
    reply = await redis.register_script(_MUTATE)(
        keys=[keys.pool(agent_id), keys.agent(agent_id)],
        args=[op, padded[0], padded[1], prefix, suffix, padded[2], padded[3], padded[4]],
    )
    status, *rest = (text(x) for x in reply)
    if status == "ok":
        version, strategy, providers, priorities, earliest = rest
        return Pool(
            agent_id=agent_id,
            strategy=parse_strategy(strategy),
            providers=tuple(orjson.loads(providers)),
            version=int(version),
            priorities=_priorities(priorities),
            prefer_earliest_reset=bool(earliest),
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
    redis: Redis,
    keys: Keys,
    agent_id: str,
    strategy: str,
    providers: list[str] | tuple[str, ...],
    *,
    priorities: Mapping[str, str] | None = None,
    prefer_earliest_reset: bool = False,
) -> Pool:
    """Replace the agent's pool (priorities and options too: omitted ones are reset).

    Raises:
        InvalidField: Unknown strategy, empty, duplicate, unregistered or disabled member, a
            bad priority, ``prefer_earliest_reset`` outside quota-aware.
        NotFound: The agent does not exist.
    """
    validate_pool(strategy, providers, priorities, prefer_earliest_reset)
    kept = {k: v for k, v in (priorities or {}).items() if v != "normal"}
    return await _mutate(
        redis,
        keys,
        agent_id,
        "put",
        strategy,
        orjson.dumps(list(providers)).decode(),
        "",
        orjson.dumps(kept).decode() if kept else "{}",
        "1" if prefer_earliest_reset else "",
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
