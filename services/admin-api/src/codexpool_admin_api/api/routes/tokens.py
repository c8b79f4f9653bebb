"""Admin API tokens: create (the token is shown once), list, revoke. Admins only."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.auth import Principal, Role, TokenRecord
from codexpool_admin_api.deps import AdminDep, AuditorDep, TokenStoreDep, ViewerDep
from codexpool_shared.errors import ApiError
from codexpool_shared.store.providers import PRINTABLE_TEXT

router = APIRouter(prefix="/api/tokens", tags=["tokens"], responses=RESPONSES)
me_router = APIRouter(tags=["tokens"], responses=RESPONSES)


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=PRINTABLE_TEXT)
    role: Role


class TokenOut(BaseModel):
    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str


class TokenCreated(TokenOut):
    token: str
    """The bearer token; shown only in this response."""


class TokenList(BaseModel):
    data: list[TokenOut]


def _out(record: TokenRecord) -> TokenOut:
    return TokenOut.model_validate(record.model_dump())


@me_router.get("/api/me")
async def who_am_i(principal: ViewerDep) -> Principal:
    """The calling token's id, name and role (lets a client tell admins from viewers)."""
    return principal


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_token(
    body: TokenCreate, admin: AdminDep, tokens: TokenStoreDep, audit: AuditorDep
) -> TokenCreated:
    """Create an admin or viewer token; the token is in this response only."""
    record, token = await tokens.create(body.name, body.role, created_by=admin.id)
    out = _out(record)
    await audit.record(admin, "token.create", record.id, after=out.model_dump(mode="json"))
    return TokenCreated(**out.model_dump(), token=token)


@router.get("")
async def list_tokens(_: AdminDep, tokens: TokenStoreDep) -> TokenList:
    """Tokens created through the API (never the tokens themselves)."""
    return TokenList(data=[_out(r) for r in await tokens.list()])


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(
    token_id: str, admin: AdminDep, tokens: TokenStoreDep, audit: AuditorDep
) -> None:
    """Revoke a token; it stops working at once."""
    record = await tokens.revoke(token_id)
    if record is None:
        raise ApiError(404, f"no token {token_id!r}", code="not_found", param="token_id")
    await audit.record(admin, "token.revoke", token_id, before=_out(record).model_dump(mode="json"))
