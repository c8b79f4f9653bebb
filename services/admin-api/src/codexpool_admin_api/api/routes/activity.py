"""A pool's activity table, and Refresh Live State."""

from __future__ import annotations

from fastapi import APIRouter

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.deps import AdminDep, LiveRefresherDep, ViewerDep
from codexpool_admin_api.pool_activity import ActivityOut, pool_activity
from codexpool_shared.service import KeysDep, RedisDep
from codexpool_shared.store.agents import get_agent
from codexpool_shared.store.pools import get_pool

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


@router.post("/refresh")
async def refresh_codex_pool_live_state(
    agent_id: str, admin: AdminDep, live: LiveRefresherDep
) -> ActivityOut:
    """Refresh Live State: fetch each member's quota from the usage endpoint now, then return
    the activity (``refresh_error`` says why a member could not be read). An expired access
    token is refreshed first, single-flight with the routers."""
    return await live.refresh_pool(admin, agent_id)
