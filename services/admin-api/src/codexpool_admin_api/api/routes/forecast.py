"""A pool's quota runway: each member's burn rate per window and the pool's runway against its
resets (``codexpool_shared.forecast``; the model and its limits are in the README)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.deps import ViewerDep
from codexpool_shared.forecast import forecast, read_samples
from codexpool_shared.service import KeysDep, RedisDep
from codexpool_shared.store.agents import get_agent
from codexpool_shared.store.pools import get_pool

router = APIRouter(prefix="/api/agents/{agent_id}/codex-pool", tags=["pools"], responses=RESPONSES)


class ProviderRunway(BaseModel):
    provider: str
    window: Literal["primary", "secondary"]
    used_percent: float
    burn_percent_per_hour: float | None
    """Least-squares slope over the current window's samples of the last hour; null with fewer
    than 3 samples spanning 10 s."""
    exhausts_at: datetime | None
    """When the line reaches 100 %; null when it is not rising or the rate is unknown."""
    resets_at: datetime | None


class PoolRunway(BaseModel):
    runway_s: float | None
    exhausts_at: datetime | None
    limited_by: Literal["primary", "secondary"] | None
    """The window that runs dry first."""
    before_reset: bool
    """The pool runs dry before any member's limiting window resets (``pool.runway_low.v1``)."""


class ForecastOut(BaseModel):
    agent_id: str
    at: datetime
    providers: list[ProviderRunway]
    pool: PoolRunway


def _at(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)


@router.get("/forecast")
async def get_codex_pool_forecast(
    agent_id: str, _: ViewerDep, redis: RedisDep, keys: KeysDep
) -> ForecastOut:
    """Burn rate and exhaustion time per member and window; the pool's runway against its
    resets (null where there is not enough data)."""
    await get_agent(redis, keys, agent_id)
    pool = await get_pool(redis, keys, agent_id)
    now = time.time()
    members = list(pool.providers)
    found = forecast(await read_samples(redis, keys, members, now), members, now)
    return ForecastOut(
        agent_id=agent_id,
        at=datetime.fromtimestamp(now, UTC),
        providers=[
            ProviderRunway(
                provider=r.provider,
                window=r.window,
                used_percent=r.used_percent,
                burn_percent_per_hour=r.burn_percent_per_hour,
                exhausts_at=_at(r.exhausts_at),
                resets_at=_at(r.resets_at),
            )
            for r in found.providers
        ],
        pool=PoolRunway(
            runway_s=found.pool.runway_s,
            exhausts_at=_at(found.pool.exhausts_at),
            limited_by=found.pool.limited_by,
            before_reset=found.pool.before_reset,
        ),
    )
