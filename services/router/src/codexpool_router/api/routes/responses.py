"""``POST /v1/responses``, ``POST /backend-api/codex/responses``, their ``/compact`` twins and
``POST /v1/chat/completions``: every route that sends a request through the pool.

:class:`Responses` is the handler: a plain ASGI app that ``app.RouterApp`` calls before any
FastAPI or Starlette layer, under its own SERVER span (:func:`hot_routes`). It authenticates and
selects in one Redis round trip, hands the candidates to ``failover.serve``, and emits one
outcome event. Each request is tracked by the process's drain, whose deadline ends it cleanly
(``shutdown.py``).

``router`` declares the same routes to FastAPI once, for the OpenAPI document and so that
other methods on these paths get 405 with ``Allow: POST``. FastAPI itself answers a ``POST``
only while ``RouterApp`` has no Core: before the lifespan has started or after it has ended.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, NoReturn

from fastapi import APIRouter
from starlette.types import Receive, Scope, Send

from codexpool_router.answers import router_headers, send_error
from codexpool_router.chat import REFUSED
from codexpool_router.core import Core
from codexpool_router.failover import serve
from codexpool_router.inbound import Dialect, agent_key_digest, header, parse_body, read_body
from codexpool_router.outcome import Ledger
from codexpool_router.shutdown import InFlight, shutting_down
from codexpool_shared.drain import Drain
from codexpool_shared.errors import ApiError
from codexpool_shared.store.selection import AgentRefused, NoPool
from codexpool_shared.telemetry import TracedRoute

ROUTES: dict[str, tuple[str, Dialect]] = {
    "/v1/responses": ("v1", "responses"),
    "/backend-api/codex/responses": ("codex", "responses"),
    "/v1/chat/completions": ("chat", "chat"),
    "/v1/responses/compact": ("v1_compact", "compact"),
    "/backend-api/codex/responses/compact": ("codex_compact", "compact"),
}
"""Each pooled path, its ``route`` label in metrics and outcome events, and what it speaks."""


async def _watch(receive: Receive, task: asyncio.Task[Any], ledger: Ledger) -> None:
    message = await receive()
    if message["type"] == "http.disconnect" and not ledger.finished:
        ledger.client_gone = True
        task.cancel()


class Responses:
    """The handler of one responses route."""

    def __init__(self, core: Core, route: str, drain: Drain, dialect: Dialect) -> None:
        self._core = core
        self._route = route
        self._drain = drain
        self._dialect: Dialect = dialect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        core = self._core
        ledger = Ledger(core, self._route, "req_" + secrets.token_hex(12))
        core.requests += 1
        try:
            await self._serve(scope, receive, ledger.timed(send), ledger)
        finally:
            core.requests -= 1
            ledger.counted()

    async def _serve(self, scope: Scope, receive: Receive, send: Send, ledger: Ledger) -> None:
        core = self._core
        try:
            digest = agent_key_digest(scope)
            raw = await read_body(scope, receive, core.settings.max_body_bytes)
            session = header(scope, b"session-id") or header(scope, b"session_id")
            inbound = parse_body(raw, session, self._dialect)
            selection = await core.select(
                digest, inbound.session_digest, inbound.model, ledger.request_id
            )
        except ApiError as error:
            ledger.rejected(error, _agent_of(error))
            await send_error(send, error, router_headers(ledger.request_id, None, 0))
            return
        ledger.routed(selection, inbound)
        task = asyncio.current_task()
        assert task is not None
        inflight = InFlight(task)
        self._drain.track(inflight)
        watcher = asyncio.create_task(_watch(receive, task, ledger))
        try:
            await serve(core, scope, send, ledger, inbound, selection, inflight)
        except ApiError as error:
            # Raised before any answer started: a stored credential this key cannot decrypt.
            if inflight.answering:
                raise
            ledger.final_outcome = "no_eligible_provider"
            headers = router_headers(ledger.request_id, None, len(ledger.attempts))
            await send_error(send, error, headers)
        except asyncio.CancelledError:
            if ledger.client_gone:
                task.uncancel()
                ledger.final_outcome = "cancelled"
            elif inflight.stopping:
                task.uncancel()
                ledger.final_outcome = "shutdown"
                headers = router_headers(ledger.request_id, None, len(ledger.attempts))
                await send_error(send, shutting_down(), headers)
            else:
                raise
        finally:
            self._drain.untrack(inflight)
            ledger.finished = True
            watcher.cancel()
            ledger.emit()


def _agent_of(error: ApiError) -> str | None:
    # Core.refusal raises "from None", which hides its cause but still keeps it as the context.
    cause = error.__context__
    return cause.agent_id if isinstance(cause, NoPool | AgentRefused) else None


def hot_routes(core: Core, drain: Drain) -> dict[str, TracedRoute]:
    """Each responses path and its traced handler, as ``RouterApp`` dispatches ``POST``."""
    return {
        path: TracedRoute(Responses(core, route, drain, dialect), path)
        for path, (route, dialect) in ROUTES.items()
    }


router = APIRouter(tags=["responses"])

_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["model"],
                "properties": {
                    "model": {"type": "string", "minLength": 1},
                    "stream": {"type": "boolean"},
                    "input": {"type": ["string", "array"]},
                    "instructions": {"type": "string"},
                    "prompt_cache_key": {"type": "string"},
                },
                "additionalProperties": True,
            }
        }
    },
    "description": "An OpenAI Responses API request; gzip, deflate or zstd bodies are decoded.",
}

_TEXT_PARTS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    },
}
_TEXT = {"anyOf": [{"type": "string"}, _TEXT_PARTS]}
_USER_PARTS = {
    "type": "array",
    "items": {
        "anyOf": [
            _TEXT_PARTS["items"],
            {
                "type": "object",
                "required": ["type", "image_url"],
                "properties": {
                    "type": {"const": "image_url"},
                    "image_url": {
                        "type": "object",
                        "required": ["url"],
                        "properties": {"url": {"type": "string"}},
                    },
                },
            },
        ]
    },
}
_TOOL_CALL = {
    "type": "object",
    "required": ["id", "type", "function"],
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name", "arguments"],
            "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
        },
    },
}
_MESSAGE = {
    "oneOf": [
        {
            "type": "object",
            "required": ["role", "content"],
            "properties": {"role": {"enum": ["system", "developer"]}, "content": _TEXT},
        },
        {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"const": "user"},
                "content": {"anyOf": [{"type": "string"}, _USER_PARTS]},
            },
        },
        {
            "type": "object",
            "required": ["role"],
            "properties": {
                "role": {"const": "assistant"},
                "content": {"anyOf": [_TEXT, {"type": "null"}]},
                "tool_calls": {"type": "array", "items": _TOOL_CALL},
            },
        },
        {
            "type": "object",
            "required": ["role", "tool_call_id", "content"],
            "properties": {
                "role": {"const": "tool"},
                "tool_call_id": {"type": "string"},
                "content": _TEXT,
            },
        },
    ]
}
_REFUSED_PARAMETERS = {
    name: {"type": "null", "description": f"Refused with 400 `unsupported_parameter`: {why}."}
    for name, why in REFUSED.items()
}
_CHAT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["model", "messages"],
                "properties": {
                    "model": {"type": "string", "minLength": 1},
                    "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
                    "stream": {"type": "boolean"},
                    "stream_options": {
                        "type": "object",
                        "properties": {"include_usage": {"type": "boolean"}},
                    },
                    "tools": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "function"],
                            "properties": {
                                "type": {"const": "function"},
                                "function": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "description": {"type": "string"},
                                        "parameters": {"type": "object"},
                                    },
                                },
                            },
                        },
                    },
                    "tool_choice": {
                        "anyOf": [
                            {"enum": ["auto", "none", "required"]},
                            {
                                "type": "object",
                                "required": ["type", "function"],
                                "properties": {
                                    "type": {"const": "function"},
                                    "function": {
                                        "type": "object",
                                        "required": ["name"],
                                        "properties": {"name": {"type": "string"}},
                                    },
                                },
                            },
                        ]
                    },
                    "response_format": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {"type": {"enum": ["text", "json_object"]}},
                    },
                    "n": {"enum": [1, None]},
                    **_REFUSED_PARAMETERS,
                    "logprobs": {"enum": [False, None]},
                },
                "additionalProperties": True,
            }
        }
    },
    "description": "An OpenAI Chat Completions request, translated to the Responses backend. "
    "The parameters the backend refuses (`max_tokens`, `stop`, ...) must be absent or null: "
    "any other value gets a 400 naming the parameter. `response_format` `json_schema` is "
    "accepted too (`text.format`).",
}

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The upstream's Response, or its event stream when `stream` is true",
        "content": {"application/json": {}, "text/event-stream": {}},
    },
    400: {"description": "The body is not a JSON object with a `model`"},
    401: {"description": "Missing or unknown agent key"},
    413: {"description": "The body (or its decoded form) is larger than the limit"},
    415: {"description": "Unsupported Content-Encoding"},
    403: {"description": "The agent has expired, or may not use the requested model"},
    429: {
        "description": "Every member of the pool has reached its usage limit "
        "(`usage_limit_reached`), or the agent its own limit (`agent_limit_reached`)"
    },
    503: {"description": "No eligible member, all attempts failed, or the store is unreachable"},
}


async def create_response() -> NoReturn:
    """Route a Responses API request to a member of the caller's pool."""
    raise ApiError(503, "The router is starting.", code="starting")


for _path, (_, _dialect) in ROUTES.items():
    router.add_api_route(
        _path,
        create_response,
        methods=["POST"],
        response_model=None,
        responses=_ANSWERS,
        openapi_extra={"requestBody": _CHAT_BODY if _dialect == "chat" else _REQUEST_BODY},
    )
