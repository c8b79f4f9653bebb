"""``GET /v1/models`` and ``GET /backend-api/codex/models``: the models of the pool."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from codexpool_router.deps import CoreDep, MembersDep, RequestIdDep
from codexpool_router.pool_models import openai_models, upstream_models

router = APIRouter(
    tags=["models"],
    responses={
        401: {"description": "Missing or unknown agent key"},
        503: {"description": "No active member could list models, no pool, or no store"},
    },
)


@router.get("/v1/models")
async def list_models(
    request: Request, core: CoreDep, members: MembersDep, request_id: RequestIdDep
) -> dict[str, Any]:
    """The models of the first active member, as an OpenAI model list."""
    document = await upstream_models(core, members.providers, request.scope, request_id)
    return openai_models(document)


@router.get("/backend-api/codex/models")
async def codex_models(
    request: Request, core: CoreDep, members: MembersDep, request_id: RequestIdDep
) -> Response:
    """The first active member's Codex models document, unchanged."""
    document = await upstream_models(core, members.providers, request.scope, request_id)
    return Response(document, media_type="application/json")
