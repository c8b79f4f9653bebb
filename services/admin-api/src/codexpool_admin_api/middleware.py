"""Small ASGI middlewares that hold for every answer. Authorization is not one of them (it is a
dependency of every route, never a check of the path); ``AuthenticateFirst`` only makes sure a
caller is authenticated before a request body is read."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codexpool_admin_api.auth import Authenticator
from codexpool_admin_api.deps import PRINCIPAL
from codexpool_shared.errors import ApiError
from codexpool_shared.redis import UNAVAILABLE


class NoStore:
    """``Cache-Control: no-store`` on every answer: some carry a key shown once, none may be
    kept by a proxy or browser cache."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Cache-Control"] = "no-store"
            await send(message)

        await self._app(scope, receive, send_no_store if scope["type"] == "http" else send)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 (OWASP API4), declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        refusal = f"request body over {self._max_bytes} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            # Outside the app's exception handlers here: answer directly, in the shared shape.
            await ApiError(413, refusal, code="body_too_large").response()(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self._max_bytes:
                # FastAPI re-raises an HTTPException met while reading the body, as a 413.
                raise HTTPException(413, refusal)
            return message

        await self._app(scope, counting_receive, send)


class AuthenticateFirst:
    """Authenticate a request that carries a body before anything reads it.

    FastAPI parses a route's body before it resolves the route's dependencies, so without this
    an unauthenticated caller could have the service parse up to ``max_body_bytes`` of JSON on
    every try. Every route that takes a body is authenticated; the principal found here is the
    one the route's dependency uses (no second count of a failure).
    """

    def __init__(self, app: ASGIApp, authenticator: Callable[[Scope], Authenticator]) -> None:
        self._app = app
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _WITH_BODY
            or not scope["path"].startswith("/api/")
        ):
            await self._app(scope, receive, send)
            return
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        client = scope["client"][0] if scope.get("client") else "unknown"
        bearer = token.strip() if scheme.lower() == "bearer" else None
        try:
            principal = await self._authenticator(scope).authenticate(bearer or None, client)
        except ApiError as refusal:
            await refusal.response()(scope, receive, send)
            return
        except UNAVAILABLE:
            await store_unavailable().response()(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL] = principal
        await self._app(scope, receive, send)


_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def store_unavailable() -> ApiError:
    """The answer while Redis cannot be reached: the admin API fails closed."""
    return ApiError(503, "the configuration store is unavailable", code="store_unavailable")
