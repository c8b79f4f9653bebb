"""Rendering helpers shared by the routes: templates, the session cookie, notices."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from codexpool_ui.admin import AdminApiError
from codexpool_ui.config import Settings
from codexpool_ui.session import COOKIE_NAME, CSRF_FIELD, Session, Sessions

NOTICES = {
    "saved": "Routing configuration saved.",
    "deleted": "Provider removed from the pool; new requests no longer go to it.",
    "refreshed": "Live state refreshed from the upstream.",
    "relinked": "Account re-linked: the provider is active again.",
    "signed-out": "You are signed out.",
    "registered": "Provider registered: add it to a pool on an agent's Codex Pool page.",
    "provider-enabled": "Provider enabled: pools route to it again.",
    "provider-disabled": "Provider disabled: no pool sends it requests.",
    "provider-proxy-set": "Egress proxy set: the provider's requests now go through it.",
    "provider-proxy-removed": "Egress proxy removed: the provider's requests go out directly.",
    "provider-deleted": "Provider deleted and removed from every pool it was in.",
    "agent-deleted": "Agent deleted: its router keys stopped working.",
    "key-revoked": "Router key revoked: the router refuses it from the next request.",
    "limits-saved": "Limits saved: every router applies them from the next request.",
    "token-revoked": "Token revoked: it stopped working, and its sign-ins ended.",
    "expired": "Your session ended or your token was revoked: sign in again.",
}
"""The fixed texts a redirect can ask a page to show (never text taken from the URL)."""


def render(
    request: Request,
    templates: Jinja2Templates,
    name: str,
    context: dict[str, Any],
    *,
    session: Session | None,
    status_code: int = 200,
) -> Response:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    base = {"session": session, "csrf_field": CSRF_FIELD, "notice": notice}
    response = templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def set_session_cookie(
    response: Response, sessions: Sessions, settings: Settings, session: Session
) -> None:
    response.set_cookie(
        COOKIE_NAME,
        sessions.cookie(session),
        max_age=sessions.max_age_s,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure
    )


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another host."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/agents"


def refusal(exc: AdminApiError) -> str:
    """The admin API's refusal as the page says it, naming the field it was about."""
    if exc.param and exc.param not in exc.message:
        return f"{exc.param}: {exc.message}"
    return exc.message


def passes_on(exc: AdminApiError) -> bool:
    """True for the refusals the app's handlers answer (an ended session, an unreachable admin
    API) rather than the page: they are re-raised."""
    return exc.status in (401, 502)
