"""A pool's activity table, and Refresh Live State."""

from __future__ import annotations

from fastapi import APIRouter

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.deps import (
    AdminDep,
    AuditorDep,
    HttpDep,
    KeyringDep,
    MetricsDep,
    SettingsDep,
    TokenRefresherDep,
    ViewerDep,
)
from codexpool_admin_api.live_refresh import Refresher
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
    agent_id: str,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    keyring: KeyringDep,
    http: HttpDep,
    settings: SettingsDep,
    audit: AuditorDep,
    metrics: MetricsDep,
    token_refresher: TokenRefresherDep,
) -> ActivityOut:
    """Refresh Live State: fetch each member's quota from the usage endpoint now, then return
    the activity (``refresh_error`` says why a member could not be read). An expired access
    token is refreshed first, single-flight with the routers."""
    await get_agent(redis, keys, agent_id)
    pool = await get_pool(redis, keys, agent_id)
    refresher = Refresher(
        redis,
        keys,
        keyring,
        http,
        token_refresher,
        upstream_base_url=str(settings.upstream_base_url),
        timeout_s=settings.upstream_timeout_s,
    )
    errors = await refresher.refresh_all(pool.providers)
    metrics.usage_refreshes.labels("error").inc(len(errors))
    metrics.usage_refreshes.labels("ok").inc(len(pool.providers) - len(errors))
    await audit.record(admin, "pool.refresh", agent_id, after={"errors": errors})
    return await pool_activity(redis, keys, pool, admin=True, refresh_errors=errors)
