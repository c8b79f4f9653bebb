"""The audit log (admins only): newest first, paged, filterable by actor and kind."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from codexpool_ui import audit_page
from codexpool_ui.audit_page import AuditFilter
from codexpool_ui.deps import AdminDep, SessionDep, TemplatesDep
from codexpool_ui.pages import render

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("")
async def show_audit(
    request: Request,
    templates: TemplatesDep,
    admin: AdminDep,
    session: SessionDep,
    actor: Annotated[str, Query()] = "",
    kind: Annotated[str, Query()] = "",
    before: Annotated[str, Query()] = "",
) -> Response:
    actor, kind = actor.strip(), kind.strip()
    wanted = AuditFilter(actor=actor, kind=kind)
    context: dict[str, Any] = {
        "filter": wanted,
        "kinds": audit_page.KINDS,
        "entries": [],
        "older": None,
        "newest": None,
        "error": audit_page.refused_field(actor, kind, before),
    }
    status = 422 if context["error"] else 200
    if not session.is_admin:
        # The admin API shows the log to admins only: say so without asking it.
        status = 403
    elif context["error"] is None:
        entries, cursor = await audit_page.read_page(admin, session.bearer, wanted, before or None)
        query = {k: v for k, v in (("actor", actor), ("kind", kind)) if v}
        context["entries"] = entries
        context["older"] = f"/audit?{urlencode({**query, 'before': cursor})}" if cursor else None
        context["newest"] = f"/audit?{urlencode(query)}" if before else None
    return render(request, templates, "audit.html", context, session=session, status_code=status)
