"""Agents and their router keys; a key is shown once, when it is made."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.deps import AdminDep, AuditorDep, ViewerDep
from codexpool_admin_api.models import epoch
from codexpool_shared.errors import ApiError
from codexpool_shared.events import PoolChangedV1
from codexpool_shared.service import KeysDep, PublisherDep, RedisDep
from codexpool_shared.store.agents import (
    Agent,
    AgentKey,
    AgentLimits,
    add_agent_key,
    create_agent,
    delete_agent,
    get_agent,
    list_agent_keys,
    list_agents,
    revoke_agent_key,
    set_agent_limits,
)
from codexpool_shared.store.errors import NotFound
from codexpool_shared.store.pools import get_pool
from codexpool_shared.store.providers import PRINTABLE_TEXT, SLUG_PATTERN

router = APIRouter(prefix="/api/agents", tags=["agents"], responses=RESPONSES)


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=PRINTABLE_TEXT)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revoke_others: StrictBool = False
    """Rotate: revoke every other key of the agent once the new one exists."""


class LimitsIn(BaseModel):
    """The limits to change: a field given sets it (``null`` removes it), an absent one stays."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    """Requests in any sliding 60 s window, across every router replica."""
    tokens_per_day: int | None = Field(default=None, ge=1, le=10**12)
    """Tokens (``response.completed`` usage) per UTC day, counted from when the limit is set."""
    models: (
        list[Annotated[str, Field(min_length=1, max_length=100, pattern=PRINTABLE_TEXT)]] | None
    ) = Field(default=None, min_length=1, max_length=100)
    """The models the agent may request (exact names)."""
    expires_at: datetime | None = None
    """After this instant every request of the agent is refused (403 ``agent_expired``)."""


class AgentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limits: LimitsIn


class LimitsOut(BaseModel):
    requests_per_minute: int | None
    tokens_per_day: int | None
    models: list[str] | None
    expires_at: datetime | None


def _limits_out(limits: AgentLimits) -> LimitsOut:
    return LimitsOut(
        requests_per_minute=limits.requests_per_minute,
        tokens_per_day=limits.tokens_per_day,
        models=None if limits.models is None else list(limits.models),
        expires_at=epoch(limits.expires_at),
    )


class AgentKeyOut(BaseModel):
    key_id: str
    prefix: str
    created_at: datetime | None
    last_used_at: datetime | None = None
    """When a router last served a request with the key (up to a second late); null: never."""


class AgentOut(BaseModel):
    id: str
    name: str
    created_at: datetime | None
    keys: list[AgentKeyOut] | None
    """Router key ids and prefixes; ``null`` for viewers, who see no key details."""
    pool_version: int | None
    """Version of the agent's pool; ``null`` while it has none."""
    limits: LimitsOut
    """The agent's own limits (``null``: none), enforced by every router replica."""


class AgentCreated(AgentOut):
    api_key: str
    """The router key (``cpk_...``); shown only in this response."""


class KeyCreated(AgentKeyOut):
    api_key: str
    """The router key (``cpk_...``); shown only in this response."""
    revoked: list[str]
    """``key_id`` of the keys this rotation revoked."""


class AgentList(BaseModel):
    data: list[AgentOut]


def _key_out(key: AgentKey) -> AgentKeyOut:
    return AgentKeyOut(
        key_id=key.key_id,
        prefix=key.prefix,
        created_at=epoch(key.created_at),
        last_used_at=epoch(key.last_used_at),
    )


async def _agent_out(
    redis: RedisDep, keys: KeysDep, agent: Agent, *, admin: bool = True
) -> AgentOut:
    try:
        version: int | None = (await get_pool(redis, keys, agent.id)).version
    except NotFound:
        version = None
    return AgentOut(
        id=agent.id,
        name=agent.name,
        created_at=epoch(agent.created_at),
        keys=[_key_out(k) for k in await list_agent_keys(redis, keys, agent.id)] if admin else None,
        pool_version=version,
        limits=_limits_out(agent.limits),
    )


@router.get("")
async def list_all_agents(principal: ViewerDep, redis: RedisDep, keys: KeysDep) -> AgentList:
    """Every agent."""
    return AgentList(
        data=[
            await _agent_out(redis, keys, a, admin=principal.role == "admin")
            for a in await list_agents(redis, keys)
        ]
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_new_agent(
    body: AgentCreate, admin: AdminDep, redis: RedisDep, keys: KeysDep, audit: AuditorDep
) -> AgentCreated:
    """Create an agent with its first router key (in this response only)."""
    agent, api_key = await create_agent(redis, keys, body.id, body.name)
    out = await _agent_out(redis, keys, agent)
    await audit.record(admin, "agent.create", agent.id, after=out.model_dump(mode="json"))
    return AgentCreated(**out.model_dump(), api_key=api_key)


@router.get("/{agent_id}")
async def get_one_agent(
    agent_id: str, principal: ViewerDep, redis: RedisDep, keys: KeysDep
) -> AgentOut:
    """One agent with its key ids (never the keys)."""
    agent = await get_agent(redis, keys, agent_id)
    return await _agent_out(redis, keys, agent, admin=principal.role == "admin")


@router.patch("/{agent_id}")
async def patch_agent_limits(
    agent_id: str,
    body: AgentPatch,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    audit: AuditorDep,
) -> AgentOut:
    """Change the agent's limits; every router replica applies them from the next request."""
    changes: dict[str, int | list[str] | None] = {}
    for name in body.limits.model_fields_set:
        value = getattr(body.limits, name)
        changes[name] = int(value.timestamp()) if isinstance(value, datetime) else value
    before, after = await set_agent_limits(redis, keys, agent_id, changes)
    await audit.record(
        admin,
        "agent.limits",
        agent_id,
        before=_limits_out(before.limits).model_dump(mode="json"),
        after=_limits_out(after.limits).model_dump(mode="json"),
    )
    return await _agent_out(redis, keys, after)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_one_agent(
    agent_id: str,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    audit: AuditorDep,
    publisher: PublisherDep,
) -> None:
    """Delete an agent, its keys and its pool; its keys stop working at once."""
    before = await _agent_out(redis, keys, await get_agent(redis, keys, agent_id))
    await delete_agent(redis, keys, agent_id)
    await audit.record(admin, "agent.delete", agent_id, before=before.model_dump(mode="json"))
    if before.pool_version is not None:
        publisher.publish(
            PoolChangedV1(
                agent_id=agent_id,
                change="deleted",
                version=before.pool_version,
                strategy=None,
                providers=(),
                actor=admin.id,
            )
        )


@router.post("/{agent_id}/keys", status_code=status.HTTP_201_CREATED)
async def add_agent_router_key(
    agent_id: str,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    audit: AuditorDep,
    body: KeyCreate | None = None,
) -> KeyCreated:
    """Add a router key, or rotate (``revoke_others``); the key is in this response only."""
    before = [k.key_id for k in await list_agent_keys(redis, keys, agent_id)]
    meta, api_key = await add_agent_key(redis, keys, agent_id)
    revoked: list[str] = []
    if body is not None and body.revoke_others:
        for key_id in before:
            if await revoke_agent_key(redis, keys, agent_id, key_id):
                revoked.append(key_id)
    out = _key_out(meta)
    await audit.record(
        admin,
        "agent.key.rotate" if revoked else "agent.key.add",
        agent_id,
        before={"keys": before},
        after={"added": out.model_dump(mode="json"), "revoked": revoked},
    )
    return KeyCreated(**out.model_dump(), api_key=api_key, revoked=revoked)


@router.delete("/{agent_id}/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_agent_router_key(
    agent_id: str,
    key_id: str,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    audit: AuditorDep,
) -> None:
    """Revoke one router key (by its ``key_id``); the router refuses it from the next request."""
    await get_agent(redis, keys, agent_id)
    known = {k.key_id: k for k in await list_agent_keys(redis, keys, agent_id)}
    if key_id not in known or not await revoke_agent_key(redis, keys, agent_id, key_id):
        raise ApiError(
            404, f"agent {agent_id!r} has no key {key_id!r}", code="not_found", param="key_id"
        )
    await audit.record(
        admin,
        "agent.key.revoke",
        agent_id,
        before={"key": _key_out(known[key_id]).model_dump(mode="json")},
    )
