from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry

from codexpool_shared.service import state_dependency
from codexpool_ui.admin import AdminClient
from codexpool_ui.config import Settings
from codexpool_ui.session import COOKIE_NAME, CSRF_FIELD, Session, Sessions


@dataclass(frozen=True, kw_only=True)
class State:
    """What the lifespan opens; routes reach it through the dependencies below."""

    settings: Settings
    admin: AdminClient
    sessions: Sessions
    templates: Jinja2Templates
    registry: CollectorRegistry


class SignInRequired(Exception):
    """The request needs a signed-in session; the app answers with the sign-in page."""


class CsrfRefused(Exception):
    """A state-changing request without a valid CSRF token, or from another site."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


ui_state = state_dependency(State)
StateDep = Annotated[State, Depends(ui_state)]


def _settings(state: StateDep) -> Settings:
    return state.settings


def _admin(request: Request, state: StateDep) -> AdminClient:
    # The admin API counts failed sign-ins per address: name the browser's, not the UI's own.
    return state.admin.for_client(request.client.host if request.client else None)


def _sessions(state: StateDep) -> Sessions:
    return state.sessions


def _templates(state: StateDep) -> Jinja2Templates:
    return state.templates


async def _session(request: Request, state: StateDep) -> Session | None:
    return await state.sessions.load(request.cookies.get(COOKIE_NAME))


def _signed_in(session: Annotated[Session | None, Depends(_session)]) -> Session:
    if session is None or not session.signed_in:
        raise SignInRequired
    return session


def _cross_site(request: Request) -> bool:
    # Browsers send these on every POST; a mismatch means another site submitted the form.
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != request.headers.get("host")


async def _csrf_checked(
    request: Request, session: Annotated[Session | None, Depends(_session)]
) -> Session:
    if _cross_site(request):
        raise CsrfRefused("the form was submitted from another site")
    if session is None:
        raise CsrfRefused("your browser did not send a session cookie with the form")
    presented = (await request.form()).get(CSRF_FIELD)
    if not session.csrf_matches(presented if isinstance(presented, str) else None):
        raise CsrfRefused("the form did not carry a valid CSRF token")
    return session


def _signed_in_form(session: Annotated[Session, Depends(_csrf_checked)]) -> Session:
    if not session.signed_in:
        raise SignInRequired
    return session


SettingsDep = Annotated[Settings, Depends(_settings)]
AdminDep = Annotated[AdminClient, Depends(_admin)]
SessionsDep = Annotated[Sessions, Depends(_sessions)]
TemplatesDep = Annotated[Jinja2Templates, Depends(_templates)]
MaybeSessionDep = Annotated[Session | None, Depends(_session)]
SessionDep = Annotated[Session, Depends(_signed_in)]
"""A signed-in session, for pages."""
CsrfSessionDep = Annotated[Session, Depends(_csrf_checked)]
"""Any session whose form carried its CSRF token (signing in)."""
FormSessionDep = Annotated[Session, Depends(_signed_in_form)]
"""A signed-in session whose form carried its CSRF token (every change)."""


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One request for a console page: what every handler needs, together. A page subclasses
    it with its rendering methods and takes it through :func:`page_dependencies`."""

    request: Request
    templates: Jinja2Templates
    settings: Settings
    admin: AdminClient
    session: Session


P = TypeVar("P", bound=PageRequest)


def page_dependencies(page: type[P]) -> tuple[Callable[..., P], Callable[..., P]]:
    """The dependencies building ``page`` for a request: one for viewing (a signed-in session),
    one for a form's change (also its CSRF token)."""

    def viewing(
        request: Request,
        templates: TemplatesDep,
        settings: SettingsDep,
        admin: AdminDep,
        session: SessionDep,
    ) -> P:
        return page(request, templates, settings, admin, session)

    def changing(
        request: Request,
        templates: TemplatesDep,
        settings: SettingsDep,
        admin: AdminDep,
        session: FormSessionDep,
    ) -> P:
        return page(request, templates, settings, admin, session)

    return viewing, changing
