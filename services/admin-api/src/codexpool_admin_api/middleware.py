"""Two small ASGI middlewares that hold for every answer; authorization is not one of them
(it is a dependency of every route, never a check of the path)."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codexpool_shared.errors import ApiError


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
