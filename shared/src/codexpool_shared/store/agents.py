"""Agents and their router keys (docs/SPEC.md section 4).

A router key is ``cpk_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored: ``Keys.api_key(sha)`` -> agent id is what the router's selection script reads, and
``Keys.agent_keys(agent)`` lists the agent's keys with their metadata.

An agent's limits (:class:`AgentLimits`) live in its hash (:class:`AgentFields`), where the
selection script reads them in the same call that authenticates the key: an expired agent, a
model outside its list, a spent day of tokens or a full minute of requests is refused there.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Final

import orjson
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from codexpool_shared.crypto import secret_digest
from codexpool_shared.keys import Keys
from codexpool_shared.store.errors import Conflict, NotFound
from codexpool_shared.store.providers import validate_name
from codexpool_shared.store.replies import text

KEY_PREFIX = "cpk_"


class AgentFields:
    """Field names of the agent hash (``Keys.agent``) that scripts read."""

    LIMIT_EXPIRES_AT: Final = "limit_expires_at"
    """Epoch seconds after which the agent's keys are refused."""
    LIMIT_MODELS: Final = "limit_models"
    """JSON list of the models the agent may request."""
    LIMIT_TOKENS_PER_DAY: Final = "limit_tokens_per_day"
    LIMIT_REQUESTS_PER_MINUTE: Final = "limit_requests_per_minute"


class AgentLimits(BaseModel):
    """What one agent may use, whatever its pool holds; ``None`` is no limit."""

    model_config = ConfigDict(frozen=True)

    requests_per_minute: int | None = None
    """Requests in any sliding 60 s window, across every router replica."""
    tokens_per_day: int | None = None
    """Tokens (``response.completed`` usage) per UTC day, counted once the limit is set."""
    models: tuple[str, ...] | None = None
    """The models the agent may request."""
    expires_at: int | None = None
    """Epoch seconds after which every request is refused."""


_LIMIT_FIELDS: Final = {
    "requests_per_minute": AgentFields.LIMIT_REQUESTS_PER_MINUTE,
    "tokens_per_day": AgentFields.LIMIT_TOKENS_PER_DAY,
    "models": AgentFields.LIMIT_MODELS,
    "expires_at": AgentFields.LIMIT_EXPIRES_AT,
}


def _limits(raw: dict[str, str]) -> AgentLimits:
    def number(field: str) -> int | None:
        value = raw.get(field)
        return int(value) if value else None

    models = raw.get(AgentFields.LIMIT_MODELS)
    return AgentLimits(
        requests_per_minute=number(AgentFields.LIMIT_REQUESTS_PER_MINUTE),
        tokens_per_day=number(AgentFields.LIMIT_TOKENS_PER_DAY),
        models=tuple(orjson.loads(models)) if models else None,
        expires_at=number(AgentFields.LIMIT_EXPIRES_AT),
    )


class Agent(BaseModel):
    """An agent: one fleet member (or fleet) calling the router with its own keys."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    created_at: int
    limits: AgentLimits = AgentLimits()


class AgentKey(BaseModel):
    """Metadata of one router key; the key itself is shown once, at creation."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    """The first 12 hex digits of the key's SHA-256: names the key without revealing it."""
    prefix: str
    """The key's first 8 characters, to help a human recognise it."""
    created_at: int
    last_used_at: int | None = None
    """When a router last served a request with the key (epoch s; up to one flush late)."""


def key_id_of(digest: str) -> str:
    """The id naming a key in the API: the first 12 hex digits of its SHA-256."""
    return digest[:12]


def key_digest(api_key: str) -> str:
    """SHA-256 (hex) of a router key: how it is stored and looked up."""
    return secret_digest(api_key)


async def create_agent(
    redis: Redis, keys: Keys, agent_id: str, name: str | None = None
) -> tuple[Agent, str]:
    """Create an agent with its first router key.

    Returns:
        The agent and the plaintext key (shown once; only its digest is stored).

    Raises:
        InvalidField: ``agent_id`` is not a slug.
        Conflict: The id is taken.
    """
    validate_name(agent_id, "id")
    now = int(time.time())
    created = await redis.hsetnx(keys.agent(agent_id), "id", agent_id)
    if not created:
        raise Conflict("id", f"agent {agent_id!r} already exists")
    await redis.hset(keys.agent(agent_id), mapping={"name": name or agent_id, "created_at": now})
    await redis.sadd(keys.agents, agent_id)
    _, api_key = await add_agent_key(redis, keys, agent_id)
    return Agent(id=agent_id, name=name or agent_id, created_at=now), api_key


async def get_agent(redis: Redis, keys: Keys, agent_id: str) -> Agent:
    """The agent ``agent_id``; raises ``NotFound``."""
    raw = {text(k): text(v) for k, v in (await redis.hgetall(keys.agent(agent_id))).items()}
    if not raw:
        raise NotFound("agent", agent_id)
    return Agent(
        id=agent_id,
        name=raw.get("name", agent_id),
        created_at=int(raw["created_at"]),
        limits=_limits(raw),
    )


async def set_agent_limits(
    redis: Redis, keys: Keys, agent_id: str, changes: Mapping[str, int | Sequence[str] | None]
) -> tuple[Agent, Agent]:
    """Set (or, with ``None``, clear) the named limits of an agent; the others stay.

    ``changes`` maps :class:`AgentLimits` field names to validated values. Returns the agent
    before and after. Raises ``NotFound``.
    """
    before = await get_agent(redis, keys, agent_id)
    sets: dict[FieldT, EncodableT] = {}
    clears: list[str] = []
    for name, value in changes.items():
        field = _LIMIT_FIELDS[name]
        if value is None:
            clears.append(field)
        elif isinstance(value, int):
            sets[field] = str(value)
        else:
            sets[field] = orjson.dumps(list(value)).decode()
    async with redis.pipeline(transaction=True) as pipe:
        if sets:
            pipe.hset(keys.agent(agent_id), mapping=sets)
        if clears:
            pipe.hdel(keys.agent(agent_id), *clears)
        await pipe.execute()
    return before, await get_agent(redis, keys, agent_id)


async def list_agents(redis: Redis, keys: Keys) -> list[Agent]:
    """Every agent, sorted by id."""
    ids = sorted(text(a) for a in await redis.smembers(keys.agents))
    return [await get_agent(redis, keys, agent_id) for agent_id in ids]


async def add_agent_key(redis: Redis, keys: Keys, agent_id: str) -> tuple[AgentKey, str]:
    """Mint a new router key for an existing agent.

    Returns:
        The key's metadata and the plaintext key (shown once).

    Raises:
        NotFound: The agent does not exist.
    """
    if not await redis.exists(keys.agent(agent_id)):
        raise NotFound("agent", agent_id)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    digest = key_digest(api_key)
    meta = AgentKey(key_id=key_id_of(digest), prefix=api_key[:8], created_at=int(time.time()))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.api_key(digest), agent_id)
        pipe.hset(
            keys.agent_keys(agent_id),
            digest,
            orjson.dumps(meta.model_dump(exclude={"last_used_at"})),
        )
        await pipe.execute()
    return meta, api_key


async def list_agent_keys(redis: Redis, keys: Keys, agent_id: str) -> list[AgentKey]:
    """Metadata of the agent's keys, with when each was last used."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.agent_keys(agent_id))
        pipe.hgetall(keys.agent_keys_used(agent_id))
        rows, used = await pipe.execute()
    last_used = {text(k): int(v) for k, v in used.items()}
    metas = (AgentKey.model_validate_json(v) for v in rows.values())
    return sorted(
        (m.model_copy(update={"last_used_at": last_used.get(m.key_id)}) for m in metas),
        key=lambda k: k.created_at,
    )


async def record_keys_used(redis: Redis, keys: Keys, used: Mapping[tuple[str, str], int]) -> None:
    """Store when each (agent id, key id) was last used (epoch s), one round trip."""
    by_agent: dict[str, dict[FieldT, EncodableT]] = {}
    for (agent_id, used_key_id), at in used.items():
        by_agent.setdefault(agent_id, {})[used_key_id] = at
    async with redis.pipeline(transaction=False) as pipe:
        for agent_id, mapping in by_agent.items():
            pipe.hset(keys.agent_keys_used(agent_id), mapping=mapping)
        await pipe.execute()


async def revoke_agent_key(redis: Redis, keys: Keys, agent_id: str, key_id: str) -> bool:
    """Revoke the agent's key whose ``key_id`` is given (the whole id); True if one was revoked."""
    for digest in await redis.hkeys(keys.agent_keys(agent_id)):
        stored = text(digest)
        if key_id_of(stored) == key_id:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.delete(keys.api_key(stored))
                pipe.hdel(keys.agent_keys(agent_id), stored)
                pipe.hdel(keys.agent_keys_used(agent_id), key_id_of(stored))
                await pipe.execute()
            return True
    return False


async def resolve_agent_key(redis: Redis, keys: Keys, api_key: str) -> str | None:
    """The agent owning ``api_key``, or ``None``."""
    agent_id = await redis.get(keys.api_key(key_digest(api_key)))
    return text(agent_id) if agent_id is not None else None


async def delete_agent(redis: Redis, keys: Keys, agent_id: str) -> None:
    """Delete an agent, its keys, its pool (and overflow) and its round-robin counter."""
    digests = [text(d) for d in await redis.hkeys(keys.agent_keys(agent_id))]
    async with redis.pipeline(transaction=True) as pipe:
        for digest in digests:
            pipe.delete(keys.api_key(digest))
        pipe.delete(
            keys.agent(agent_id),
            keys.agent_keys(agent_id),
            keys.agent_keys_used(agent_id),
            keys.pool(agent_id),
            keys.rr_counter(agent_id),
            keys.agent_requests(agent_id),
            keys.overflow(agent_id),
        )
        pipe.srem(keys.agents, agent_id)
        await pipe.execute()
