"""Raw ASGI answers: JSON bodies with the router's headers, and the pool-exhausted answers."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from codexpool_shared.errors import ApiError, error_body
from codexpool_shared.store.selection import AgentRefused

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


def router_headers(request_id: str, provider: str | None, attempts: int) -> Headers:
    return [
        (b"x-request-id", request_id.encode()),
        (b"x-codexpool-provider", (provider or "none").encode()),
        (b"x-codexpool-attempts", str(attempts).encode()),
    ]


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: Headers,
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, error: ApiError, headers: Headers) -> None:
    body = orjson.dumps(
        error_body(error.message, type=error.type, code=error.code, param=error.param)
    )
    extra = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send_json(send, error.status_code, body, [*headers, *extra])


def quota_exhausted(reset_ms: int, now_ms: int) -> tuple[ApiError, bytes]:
    """429 ``usage_limit_reached`` until ``reset_ms``; the body carries Codex's fields too."""
    wait_s = max(1, math.ceil((reset_ms - now_ms) / 1000))
    resets_at = math.ceil(reset_ms / 1000)
    error = ApiError(
        429,
        "Every account in this pool has reached its usage limit; "
        f"the earliest resets in {wait_s} s.",
        code="usage_limit_reached",
        type="usage_limit_reached",
        headers={"retry-after": str(wait_s), "x-should-retry": "false"},
    )
    doc = error_body(error.message, type=error.type, code=error.code)
    doc["error"] |= {"resets_at": resets_at, "resets_in_seconds": wait_s}
    return error, orjson.dumps(doc)


def unavailable(message: str, code: str, retry_at_ms: int, now_ms: int) -> ApiError:
    headers = {"x-should-retry": "false"}
    if retry_at_ms > now_ms:
        headers["retry-after"] = str(max(1, math.ceil((retry_at_ms - now_ms) / 1000)))
    return ApiError(503, message, code=code, type="service_unavailable_error", headers=headers)


def agent_refused(refused: AgentRefused, now_ms: int) -> ApiError:
    """The agent's own limits: 429 ``agent_limit_reached`` (not the pool's
    ``usage_limit_reached``), or 403 for an expired agent or a model outside its list."""
    if refused.code == "agent_expired":
        return ApiError(
            403,
            "This agent has expired; ask an administrator to extend it.",
            code="agent_expired",
            type="permission_error",
            headers={"x-should-retry": "false"},
        )
    if refused.code == "model_not_allowed":
        return ApiError(
            403,
            "This agent may not use the requested model.",
            code="model_not_allowed",
            type="permission_error",
            param="model",
            headers={"x-should-retry": "false"},
        )
    wait_s = max(1, math.ceil((refused.until_ms - now_ms) / 1000))
    # A minute's window frees within a minute, which a client's own retry may wait for; a
    # day's tokens do not.
    retry = refused.limit == "requests_per_minute"
    return ApiError(
        429,
        f"This agent has reached its {refused.limit} limit; it frees in {wait_s} s.",
        code="agent_limit_reached",
        type="rate_limit_error",
        param=refused.limit,
        headers={"retry-after": str(wait_s), "x-should-retry": "true" if retry else "false"},
    )
