"""``GET /v1/usage`` and ``GET /backend-api/wham/usage``: the pool's combined quota."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from codexpool_router.deps import MembersDep
from codexpool_router.pool_usage import usage_document

router = APIRouter(
    tags=["usage"],
    responses={
        401: {"description": "Missing or unknown agent key"},
        503: {"description": "The agent has no pool, or the store is unreachable"},
    },
)


@router.get("/v1/usage")
@router.get("/backend-api/wham/usage")
async def usage(members: MembersDep) -> dict[str, Any]:
    """The pool's quota in the shape of the upstream's ``/wham/usage``, plus ``providers``."""
    return usage_document(members.providers, members.lives)
