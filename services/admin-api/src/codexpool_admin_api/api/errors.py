"""The error shape in the OpenAPI document, so that clients and schemathesis know every answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from codexpool_shared.errors import ApiError
from codexpool_shared.store.errors import Conflict, InvalidField, NotFound, StoreError


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("The body is not parseable JSON"),
    401: _documented("Missing or invalid bearer token"),
    403: _documented("The token's role does not allow this"),
    404: _documented("Not found"),
    409: _documented("Conflicts with the current configuration"),
    422: _documented("Invalid input; `param` names the field"),
    413: _documented("The request body is too large"),
    429: _documented("Too many failed authentication attempts"),
    502: _documented("The upstream or the OAuth issuer failed"),
    503: _documented("The configuration store (Redis) is unavailable"),
}
"""Error answers every authenticated route may give."""


# The path parameter that named what was not found.
_NOT_FOUND_PARAM = {
    "agent": "agent_id",
    "pool": "agent_id",
    "provider": "name",
    "pool member": "name",
    "request": "request_id",
}


def api_error(exc: StoreError) -> ApiError:
    """The HTTP answer to a store error, naming the field at fault."""
    if isinstance(exc, InvalidField):
        return ApiError(422, str(exc), code="invalid_value", param=exc.field)
    if isinstance(exc, NotFound):
        code = exc.kind.replace(" ", "_") + "_not_found"
        return ApiError(404, str(exc), code=code, param=_NOT_FOUND_PARAM.get(exc.kind))
    if isinstance(exc, Conflict):
        return ApiError(409, str(exc), code="conflict", param=exc.field)
    return ApiError(500, "internal error", code="internal_error")
