"""The router's headers on every answer FastAPI makes (the responses routes stamp their own)."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = "request_id"
"""Where a handler finds the answer's ``x-request-id``: ``request.state.request_id``."""


class RequestIdMiddleware:
    """Gives every answer an ``x-request-id`` and the pool headers of an answer no provider
    made."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(12)
        state: dict[str, Any] = scope.setdefault("state", {})
        state[REQUEST_ID] = request_id

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    (b"x-codexpool-provider", b"none"),
                    (b"x-codexpool-attempts", b"0"),
                ]
            await send(message)

        await self.app(scope, receive, stamped)
