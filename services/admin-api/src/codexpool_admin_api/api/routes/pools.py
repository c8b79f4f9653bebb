"""An agent's pool: strategy and ordered members. Every change bumps the pool version (in the
store's one Lua script), is audited, and publishes ``pool.changed.v1``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.deps import AdminDep, AuditorDep, KeyringDep, ViewerDep
from codexpool_admin_api.models import PoolOut, pool_out
from codexpool_admin_api.pool_events import pool_changed
from codexpool_shared.events import PoolChange, Strategy
from codexpool_shared.service import KeysDep, PublisherDep, RedisDep
from codexpool_shared.store.agents import get_agent
from codexpool_shared.store.errors import NotFound
from codexpool_shared.store.overflow import (
    OVERFLOW_KEY_PATTERN,
    OVERFLOW_URL_PATTERN,
    clear_overflow,
    get_overflow,
    set_overflow,
    validate_overflow,
)
from codexpool_shared.store.pools import (
    Pool,
    Priority,
    add_member,
    get_pool,
    put_pool,
    remove_member,
)
from codexpool_shared.store.providers import SLUG_PATTERN

router = APIRouter(prefix="/api/agents/{agent_id}/codex-pool", tags=["pools"], responses=RESPONSES)


class OverflowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(min_length=1, max_length=2048, pattern=OVERFLOW_URL_PATTERN)
    """An OpenAI-compatible API root: requests go to ``{base_url}/responses``."""
    api_key: SecretStr = Field(
        min_length=1, max_length=4096, json_schema_extra={"pattern": OVERFLOW_KEY_PATTERN}
    )
    """Sent as ``Authorization: Bearer``; stored encrypted, never returned."""


class PoolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Strategy
    providers: list[Annotated[str, Field(pattern=SLUG_PATTERN)]] = Field(
        min_length=1, max_length=64, json_schema_extra={"uniqueItems": True}
    )
    """Provider names in order; the first is the primary."""
    priorities: dict[Annotated[str, Field(pattern=SLUG_PATTERN)], Priority] = Field(
        # The key pattern becomes patternProperties; without this, the schema would admit
        # any other key with any value.
        default_factory=dict,
        max_length=64,
        json_schema_extra={"additionalProperties": False},
    )
    """Member -> ``burn_first`` (tried first), ``normal`` (the default) or ``preserve`` (used
    only when no other member is eligible); every strategy honours it."""
    prefer_earliest_reset: StrictBool = False
    """quota-aware only: the member whose quota window resets first goes first."""
    overflow: OverflowIn | None = None
    """Opt-in overflow endpoint, used only when no member is eligible; ``null`` removes it,
    absent leaves it as it is."""


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)
    position: int | None = Field(default=None, ge=0, le=64)
    """Where to insert it (0 = primary); at the end when omitted."""


async def _current(redis: RedisDep, keys: KeysDep, agent_id: str) -> Pool | None:
    try:
        return await get_pool(redis, keys, agent_id)
    except NotFound:
        return None


@router.get("")
async def get_codex_pool(agent_id: str, _: ViewerDep, redis: RedisDep, keys: KeysDep) -> PoolOut:
    """The routing configuration."""
    await get_agent(redis, keys, agent_id)
    out = pool_out(await get_pool(redis, keys, agent_id))
    return out.model_copy(update={"overflow": await get_overflow(redis, keys, agent_id)})


@router.put("")
async def put_codex_pool(
    agent_id: str,
    body: PoolIn,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    audit: AuditorDep,
    publisher: PublisherDep,
    keyring: KeyringDep,
) -> PoolOut:
    """Replace the routing configuration: strategy and members (registered, not disabled), and
    set or remove the overflow endpoint when the body names ``overflow``."""
    if body.overflow is not None:  # refused before anything is written (an unknown agent: 404)
        await get_agent(redis, keys, agent_id)
        validate_overflow(body.overflow.base_url, body.overflow.api_key.get_secret_value())
    before = await _current(redis, keys, agent_id)
    pool = await put_pool(
        redis,
        keys,
        agent_id,
        body.strategy,
        body.providers,
        priorities=body.priorities,
        prefer_earliest_reset=body.prefer_earliest_reset,
    )
    if body.overflow is not None:
        key = body.overflow.api_key.get_secret_value()
        await set_overflow(redis, keys, keyring, agent_id, body.overflow.base_url, key)
    elif "overflow" in body.model_fields_set:
        await clear_overflow(redis, keys, agent_id)
    change: PoolChange = "created" if before is None else "updated"
    out = await pool_changed(admin, audit, publisher, change, before, pool)
    return out.model_copy(update={"overflow": await get_overflow(redis, keys, agent_id)})


@router.post("/providers", status_code=status.HTTP_201_CREATED)
async def add_codex_pool_member(
    agent_id: str,
    body: MemberIn,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    audit: AuditorDep,
    publisher: PublisherDep,
) -> PoolOut:
    """Add one member."""
    before = await _current(redis, keys, agent_id)
    pool = await add_member(redis, keys, agent_id, body.provider, position=body.position)
    return await pool_changed(admin, audit, publisher, "member_added", before, pool)


@router.delete("/providers/{name}")
async def remove_codex_pool_member(
    agent_id: str,
    name: str,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    audit: AuditorDep,
    publisher: PublisherDep,
) -> PoolOut:
    """Remove one member; the next request on every router replica no longer goes to it."""
    before = await _current(redis, keys, agent_id)
    pool = await remove_member(redis, keys, agent_id, name)
    return await pool_changed(admin, audit, publisher, "member_removed", before, pool)
