"""Signing in with an admin API token, and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from codexpool_ui.admin import AdminApiError
from codexpool_ui.deps import (
    AdminDep,
    CsrfSessionDep,
    FormSessionDep,
    MaybeSessionDep,
    SessionsDep,
    SettingsDep,
    TemplatesDep,
)
from codexpool_ui.pages import clear_session_cookie, render, safe_next, set_session_cookie
from codexpool_ui.session import Session, new_session

router = APIRouter(tags=["auth"])


@router.get("/")
async def home(session: MaybeSessionDep) -> RedirectResponse:
    target = "/agents" if session is not None and session.signed_in else "/login"
    return RedirectResponse(target, status_code=303)


def _login_page(
    request: Request,
    templates: TemplatesDep,
    session: Session,
    next_path: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        templates,
        "login.html",
        {"next_path": next_path, "error": error},
        session=session,
        status_code=status_code,
    )


@router.get("/login")
async def login_form(
    request: Request,
    templates: TemplatesDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    session: MaybeSessionDep,
    next: str | None = None,
) -> Response:
    """The sign-in form; it starts an anonymous session so that the form has a CSRF token."""
    current = session or new_session()
    response = _login_page(request, templates, current, safe_next(next))
    if session is None:
        set_session_cookie(response, sessions, settings, current)
    return response


@router.post("/login")
async def login(
    request: Request,
    templates: TemplatesDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    admin: AdminDep,
    session: CsrfSessionDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/agents",
) -> Response:
    token = token.strip()
    if not token:
        return _login_page(
            request, templates, session, safe_next(next), "Paste an admin or viewer token.", 422
        )
    try:
        principal = await admin.me(token)
    except AdminApiError as exc:
        message = "The admin API did not accept this token." if exc.status == 401 else exc.message
        return _login_page(request, templates, session, safe_next(next), message, exc.status)
    signed_in = await sessions.sign_in(
        token,
        name=str(principal.get("name") or principal.get("id") or ""),
        role=str(principal.get("role") or "viewer"),
    )
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(response, sessions, settings, signed_in)
    return response


@router.post("/logout")
async def logout(settings: SettingsDep, sessions: SessionsDep, session: FormSessionDep) -> Response:
    await sessions.end(session)
    response = RedirectResponse("/login?notice=signed-out", status_code=303)
    clear_session_cookie(response, settings)
    return response
