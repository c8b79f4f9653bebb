"""Why a request went where it went, and an agent's latest requests (kept by the health
service for ``HEALTH_EXPLAIN_TTL_S``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.deps import ViewerDep
from codexpool_admin_api.explanations import (
    RequestExplanation,
    RequestSummary,
    explanation,
    summary,
)
from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.service import KeysDep, RedisDep
from codexpool_shared.store.agents import get_agent
from codexpool_shared.store.errors import NotFound
from codexpool_shared.store.replies import text

router = APIRouter(tags=["requests"], responses=RESPONSES)

RequestId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/api/requests/{request_id}")
async def get_request_explanation(
    request_id: RequestId, _: ViewerDep, redis: RedisDep, keys: KeysDep
) -> RequestExplanation:
    """Candidates with eligibility and skip reasons, attempts and final outcome of one request
    (``request_id`` is the router's ``x-request-id``), in data and in words."""
    raw = await redis.get(keys.request(request_id))
    if raw is None:
        raise NotFound("request", request_id)
    return explanation(RequestOutcomeV1.model_validate_json(raw))


@router.get("/api/agents/{agent_id}/codex-pool/requests")
async def list_codex_pool_requests(
    agent_id: str,
    _: ViewerDep,
    redis: RedisDep,
    keys: KeysDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[RequestSummary]:
    """The agent's latest requests, newest first (those still within the retention)."""
    await get_agent(redis, keys, agent_id)
    ids = await redis.lrange(keys.recent_requests(agent_id), 0, limit - 1)
    if not ids:
        return []
    # One MGET: every key of a namespace is in one cluster slot.
    bodies = await redis.mget([keys.request(text(i)) for i in ids])
    return [summary(RequestOutcomeV1.model_validate_json(b)) for b in bodies if b is not None]
