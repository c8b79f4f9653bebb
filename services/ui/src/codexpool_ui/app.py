from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from codexpool_shared import telemetry
from codexpool_shared.crypto import Keyring
from codexpool_shared.drain import Drain
from codexpool_shared.keys import Keys
from codexpool_shared.probes import ReadinessCheck, probe_router
from codexpool_shared.redis import open_redis
from codexpool_shared.service import api_options, lifespan_state, service_registry
from codexpool_shared.store.ui_sessions import RedisUiSessions, UiSessionStore
from codexpool_ui import formatting
from codexpool_ui.admin import AdminApiError, AdminClient
from codexpool_ui.api.routes import agents, audit, auth, pool, providers, tokens
from codexpool_ui.config import Settings
from codexpool_ui.deps import CsrfRefused, SignInRequired, State, ui_state
from codexpool_ui.pages import clear_session_cookie
from codexpool_ui.session import COOKIE_NAME, Sessions

_HERE = Path(__file__).parent
_LIVE_PATH_SUFFIX = "/live"
_SECURITY_HEADERS = {
    # Every asset is served by the UI itself: nothing else may run, load or frame the page.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def create_app(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    drain: Drain | None = None,
    session_store: UiSessionStore | None = None,
) -> FastAPI:
    """The UI; ``transport`` lets tests put a fake admin API behind the client, and
    ``session_store`` the sessions somewhere else than Redis; ``drain`` is the process's
    (``serve`` makes it)."""
    drain = drain or Drain(settings.drain_timeout_s)
    telemetry.configure("codexpool-ui")
    # Refuses to build without CODEXPOOL_SECRET_KEY: it keys the session cookies.
    keyring = Keyring.from_settings(settings)
    templates = Jinja2Templates(directory=_HERE / "templates")
    templates.env.filters["when"] = formatting.timestamp
    registry = service_registry()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[Mapping[str, object]]:
        async with AsyncExitStack() as stack:
            stack.callback(telemetry.flush)
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=settings.admin_api_url,
                    timeout=settings.admin_api_timeout_s,
                    transport=transport,
                    follow_redirects=False,
                )
            )
            store = session_store
            if store is None:
                redis = await open_redis(settings)
                stack.push_async_callback(redis.aclose)
                store = RedisUiSessions(redis, Keys(settings.namespace), keyring)
            sessions = Sessions(store, keyring, settings.session_max_age_s)
            yield lifespan_state(
                State(
                    settings=settings,
                    admin=AdminClient(http, registry),
                    sessions=sessions,
                    templates=templates,
                    registry=registry,
                )
            )

    # A web page, not an API: never an OpenAPI document, whatever CODEXPOOL_API_DOCS says.
    app = FastAPI(
        title="codexpool-ui",
        lifespan=lifespan,
        **{**api_options(settings), "docs_url": None, "openapi_url": None},
    )
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    telemetry.instrument_app(app)

    headers = dict(_SECURITY_HEADERS)
    if settings.cookie_secure:
        # Served over HTTPS (the secure cookie says so): browsers keep to HTTPS for a year.
        headers["Strict-Transport-Security"] = "max-age=31536000"

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    def error_page(request: Request, status: int, title: str, message: str) -> Response:
        response = templates.TemplateResponse(
            request,
            "error.html",
            {"session": None, "title": title, "message": message, "notice": None},
            status_code=status,
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def on_sign_in_required(request: Request, _: Exception) -> Response:
        if request.url.path.endswith(_LIVE_PATH_SUFFIX):
            return PlainTextResponse("sign in again", status_code=401)
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    async def on_csrf(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CsrfRefused)
        message = (
            f"This form was refused: {exc.reason}. Nothing was changed. Go back, reload the "
            "page and submit the form again."
        )
        return error_page(request, 403, "Form refused", message)

    async def on_admin_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AdminApiError)
        if exc.status == 401:
            # The token was revoked (or expired): its session ends for every replica.
            sessions = ui_state(request).sessions
            session = await sessions.load(request.cookies.get(COOKIE_NAME))
            if session is not None:
                await sessions.end(session)
            response: Response = RedirectResponse("/login?notice=expired", status_code=303)
            if request.url.path.endswith(_LIVE_PATH_SUFFIX):
                response = PlainTextResponse("sign in again", status_code=401)
            clear_session_cookie(response, settings)
            return response
        title = {404: "Not found"}.get(exc.status, "The admin API refused")
        if exc.status >= 500:
            title = "The admin API is unavailable"
        return error_page(request, exc.status, title, exc.message)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = "Not found" if exc.status_code == 404 else "Request refused"
        return error_page(request, exc.status_code, title, str(exc.detail))

    async def on_unexpected(request: Request, _: Exception) -> Response:
        # Starlette re-raises after this answer, so the server logs the traceback once.
        return error_page(
            request, 500, "Something went wrong", "The page could not be built; try again."
        )

    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(CsrfRefused, on_csrf)
    app.add_exception_handler(AdminApiError, on_admin_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)

    def checks(request: Request) -> Mapping[str, ReadinessCheck]:
        state = ui_state(request)
        return {"admin_api": state.admin.livez, "sessions": state.sessions.store.ping}

    app.include_router(probe_router(registry, checks, drain))
    app.include_router(auth.router)
    app.include_router(agents.router)
    app.include_router(pool.router)
    app.include_router(providers.router)
    app.include_router(tokens.router)
    app.include_router(audit.router)
    return app
