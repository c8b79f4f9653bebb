"""Admin API tokens (admins only): create (the token is shown once) and revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from codexpool_ui import formatting
from codexpool_ui.admin import AdminApiError, AdminClient, JsonObject
from codexpool_ui.deps import AdminDep, FormSessionDep, SessionDep, TemplatesDep
from codexpool_ui.pages import passes_on, refusal, render
from codexpool_ui.session import Session

router = APIRouter(prefix="/tokens", tags=["tokens"])

ROLES = ("viewer", "admin")


async def _page(
    request: Request,
    templates: TemplatesDep,
    admin: AdminClient,
    session: Session,
    *,
    created: JsonObject | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    # Viewers may not list tokens (the admin API says 403): the page says so without asking.
    tokens = await admin.tokens(session.bearer) if session.is_admin else []
    context: dict[str, Any] = {
        "tokens": [{**t, "created": formatting.timestamp(t.get("created_at"))} for t in tokens],
        "roles": ROLES,
        "created": created,
        "error": error,
        "form": form or {},
    }
    status = status_code if session.is_admin else 403
    return render(request, templates, "tokens.html", context, session=session, status_code=status)


@router.get("")
async def list_tokens(
    request: Request, templates: TemplatesDep, admin: AdminDep, session: SessionDep
) -> Response:
    return await _page(request, templates, admin, session)


@router.post("")
async def create_token(
    request: Request,
    templates: TemplatesDep,
    admin: AdminDep,
    session: FormSessionDep,
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "viewer",
) -> Response:
    name = name.strip()
    kept = {"name": name, "role": role}
    error = None
    if not name:
        error = "name: say who or what the token is for"
    elif role not in ROLES:
        error = "role: choose viewer or admin"
    if error is not None:
        return await _page(
            request, templates, admin, session, error=error, form=kept, status_code=422
        )
    try:
        created = await admin.create_token(session.bearer, name, role)
    except AdminApiError as exc:
        if passes_on(exc):
            raise
        return await _page(
            request,
            templates,
            admin,
            session,
            error=refusal(exc),
            form=kept,
            status_code=exc.status,
        )
    return await _page(request, templates, admin, session, created=created, status_code=201)


@router.post("/{token_id}/revoke")
async def revoke_token(
    token_id: str,
    request: Request,
    templates: TemplatesDep,
    admin: AdminDep,
    session: FormSessionDep,
) -> Response:
    try:
        await admin.revoke_token(session.bearer, token_id)
    except AdminApiError as exc:
        if passes_on(exc):
            raise
        return await _page(
            request, templates, admin, session, error=refusal(exc), status_code=exc.status
        )
    return RedirectResponse("/tokens?notice=token-revoked", status_code=303)
