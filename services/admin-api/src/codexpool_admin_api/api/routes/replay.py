"""What-if replay: the pool's recorded requests under another strategy or membership, projected
beside what actually happened (``codexpool_shared.replay``; the model is in the README)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.deps import AdminDep
from codexpool_shared.events import Strategy
from codexpool_shared.replay import Tally, actual_tally, recorded_requests, replay
from codexpool_shared.service import KeysDep, RedisDep
from codexpool_shared.store.agents import get_agent
from codexpool_shared.store.pools import get_pool, validate_pool
from codexpool_shared.store.providers import SLUG_PATTERN

router = APIRouter(prefix="/api/agents/{agent_id}/codex-pool", tags=["pools"], responses=RESPONSES)

MAX_REQUESTS = 20_000
"""Most recorded requests one replay runs (the newest of the window)."""
DEADLINE_S = 20.0


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Strategy
    providers: list[Annotated[str, Field(pattern=SLUG_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=64
    )
    """Members in order; the pool's current members when omitted."""
    since_s: float = Field(default=21_600, gt=0, le=86_400)
    """The window replayed: the last ``since_s`` seconds (6 h by default, a day at most)."""


class TallyOut(BaseModel):
    served: int
    limited: int
    fallbacks: int
    first_exhaustion_at: datetime | None
    per_provider: dict[str, int]


class ReplayOut(BaseModel):
    requests: int
    strategy: Strategy
    providers: list[str]
    projected: TallyOut
    actual: TallyOut
    truncated: bool


def _out(tally: Tally) -> TallyOut:
    at = tally.first_exhaustion_at
    return TallyOut(
        served=tally.served,
        limited=tally.limited,
        fallbacks=tally.fallbacks,
        first_exhaustion_at=None if at is None else datetime.fromtimestamp(at, UTC),
        per_provider=dict(tally.per_provider),
    )


@router.post("/replay")
async def replay_codex_pool(
    agent_id: str, body: ReplayIn, _: AdminDep, redis: RedisDep, keys: KeysDep
) -> ReplayOut:
    """The recorded requests of the last ``since_s`` replayed under ``strategy`` and
    ``providers`` with the router's own selection script, projected beside actual. Read-only:
    the replay runs in a scratch namespace it deletes."""
    await get_agent(redis, keys, agent_id)
    pool = await get_pool(redis, keys, agent_id)
    members = body.providers or list(pool.providers)
    validate_pool(body.strategy, members)
    now = time.time()
    start = now - body.since_s
    requests, more = await recorded_requests(redis, keys, agent_id, body.since_s, now, MAX_REQUESTS)
    projected, cut = await replay(
        redis, keys, requests, body.strategy, members, start=start, now=now, deadline_s=DEADLINE_S
    )
    return ReplayOut(
        requests=len(requests),
        strategy=body.strategy,
        providers=members,
        projected=_out(projected),
        actual=_out(actual_tally(requests)),
        truncated=more or cut,
    )
