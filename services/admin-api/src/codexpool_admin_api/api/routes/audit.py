"""The audit log, newest first. Admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.audit import AuditEntry, EntryId
from codexpool_admin_api.deps import AdminDep, AuditorDep

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=RESPONSES)


class AuditPage(BaseModel):
    data: list[AuditEntry]
    next_before: str | None
    """Pass as ``before`` to read the next (older) page; ``null`` on the last page."""


@router.get("")
async def list_audit(
    _: AdminDep,
    audit: AuditorDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[EntryId | None, Query()] = None,
) -> AuditPage:
    """Audit entries: who changed what, when, before and after."""
    entries = await audit.read(limit=limit, before=before)
    return AuditPage(data=entries, next_before=entries[-1].id if len(entries) == limit else None)
