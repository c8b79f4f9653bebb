"""OpenAI-shaped error bodies, the one error shape every service answers with.

``{"error": {"message": ..., "type": ..., "code": ..., "param": ...}}`` is what the official
``openai`` SDK parses into ``APIStatusError.body``; the admin API and UI use the same shape so
that a client handles one form everywhere.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match


def error_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"error": {"message": message, "type": type, "code": code, "param": param}}


_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """An error answered to the client as an OpenAI-shaped body; raise it from any route."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code
        self.param = param
        fallback = "invalid_request_error" if 400 <= status_code < 500 else "server_error"
        self.type = type or _TYPE_BY_STATUS.get(status_code, fallback)
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The error as a response."""
        return JSONResponse(
            error_body(self.message, type=self.type, code=self.code, param=self.param),
            status_code=self.status_code,
            headers=self.headers,
        )


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route of the app serves at this path.

    Starlette answers a 405 with the methods of the first route whose path matched, but one path
    is often several routes (GET and POST /api/agents are two), so that list would be short.
    Each method is tried against the routes as the router would, whatever nests them.
    """
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` answer in the shared shape, never with a stack trace."""

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return ApiError(exc.status_code, str(exc.detail), headers=headers).response()

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        param = _field_path(tuple(first.get("loc", ())))
        return ApiError(
            422, f"{param}: {first.get('msg', 'invalid value')}", code="invalid_value", param=param
        ).response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
