"""A pool's activity table, its usage history, and Refresh Live State."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.deps import AdminDep, LiveRefresherDep, ViewerDep
from codexpool_admin_api.pool_activity import ActivityOut, pool_activity
from codexpool_shared.activity import USAGE_HISTORY_HOURS
from codexpool_shared.service import KeysDep, RedisDep
from codexpool_shared.store.agents import get_agent
from codexpool_shared.store.pools import get_pool
from codexpool_shared.usage_history import UsageHistory, read_usage_history

router = APIRouter(prefix="/api/agents/{agent_id}/codex-pool", tags=["pools"], responses=RESPONSES)


@router.get("/activity")
async def get_codex_pool_activity(
    agent_id: str, principal: ViewerDep, redis: RedisDep, keys: KeysDep
) -> ActivityOut:
    """Per member: requests, success rate, health score and components, fallbacks, timeline,
    quota and status; admins also get the OAuth link details."""
    await get_agent(redis, keys, agent_id)
    pool = await get_pool(redis, keys, agent_id)
    return await pool_activity(redis, keys, pool, admin=principal.role == "admin")


@router.get("/usage-history")
async def get_codex_pool_usage_history(
    agent_id: str,
    _: ViewerDep,
    redis: RedisDep,
    keys: KeysDep,
    hours: Annotated[int, Query(ge=1, le=USAGE_HISTORY_HOURS)] = USAGE_HISTORY_HOURS,
) -> UsageHistory:
    """The agent's requests and tokens per member and in total, one point per hour, oldest
    first, up to 28 days (computed by the health service from the outcome events). Members are
    the pool's current ones."""
    await get_agent(redis, keys, agent_id)
    pool = await get_pool(redis, keys, agent_id)
    return await read_usage_history(redis, keys, pool.providers, scope=agent_id, hours=hours)


@router.post("/refresh")
async def refresh_codex_pool_live_state(
    agent_id: str, admin: AdminDep, live: LiveRefresherDep
) -> ActivityOut:
    """Refresh Live State: fetch each member's quota from the usage endpoint now, then return
    the activity (``refresh_error`` says why a member could not be read). An expired access
    token is refreshed first, single-flight with the routers."""
    return await live.refresh_pool(admin, agent_id)
