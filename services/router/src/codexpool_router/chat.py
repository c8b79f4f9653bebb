"""Chat Completions over the Responses backend (``POST /v1/chat/completions``).

The request is translated once, before routing (:func:`to_responses`), so the pool, failover,
events and explanation are the responses routes' own; only the answer differs. A stream goes
through :class:`ChunkStream` (Responses events in, ``chat.completion.chunk`` lines and
``[DONE]`` out); a non-streaming answer is the assembled Response turned into one
``chat.completion`` (:func:`completion`).

Parameters the Codex backend refuses (``max_output_tokens``, protocol 3.3) or the Responses API
does not have are answered with a 400 naming the parameter rather than dropped: a client that
asked for a token cap or stop words must not silently get an answer without them.
"""

from __future__ import annotations

from typing import Any

import orjson

from codexpool_router.sse import event_data
from codexpool_shared.errors import ApiError

REFUSED = {
    "max_tokens": "the Codex backend does not accept an output token limit",
    "max_completion_tokens": "the Codex backend does not accept an output token limit",
    "stop": "the Responses API has no stop sequences",
    "logit_bias": "the Responses API has no logit bias",
    "logprobs": "the Codex backend returns no log probabilities",
    "top_logprobs": "the Codex backend returns no log probabilities",
    "frequency_penalty": "the Responses API has no frequency penalty",
    "presence_penalty": "the Responses API has no presence penalty",
    "audio": "the Codex backend answers text only",
    "prediction": "the Responses API has no predicted outputs",
}
"""Parameters refused with a 400 when present with a value other than null (or false), and
why; the OpenAPI document lists the same (``api/routes/responses.py``)."""

_PASSED = ("temperature", "top_p", "parallel_tool_calls", "prompt_cache_key", "service_tier")
"""Parameters the Responses API has under the same name; the backend decides whether it takes
them (a refusal comes back as its own 400)."""


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, code="unsupported_parameter", param=param)


def _text(content: Any, param: str) -> str:
    """The text of a system, developer or tool message (a string or text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                raise _bad("Only text content parts are supported in this message.", param)
            texts.append(str(part.get("text") or part.get("refusal") or ""))
        return "".join(texts)
    raise _bad("Message content must be a string or a list of content parts.", param)


def _user_content(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    if not isinstance(content, list):
        raise _bad("Message content must be a string or a list of content parts.", param)
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": str(part.get("text") or "")})
        elif kind == "image_url" and isinstance(image := part.get("image_url"), dict):
            parts.append(
                {
                    "type": "input_image",
                    "image_url": image.get("url"),
                    "detail": image.get("detail") or "auto",
                }
            )
        else:
            raise _bad(f"Content part type {kind!r} is not supported.", param)
    return parts


def _input(messages: Any) -> tuple[str, list[dict[str, Any]]]:
    """The Responses ``instructions`` (every system and developer message) and ``input``."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(
            400,
            "Missing required parameter: 'messages'.",
            code="missing_required_parameter",
            param="messages",
        )
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            instructions.append(_text(content, param))
        elif role == "user":
            items.append(
                {"type": "message", "role": "user", "content": _user_content(content, param)}
            )
        elif role == "assistant":
            assert isinstance(message, dict)
            if text := _text(content, param):
                items.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text}],
                    }
                )
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                raise _bad("'tool_calls' must be a list.", f"{param}.tool_calls")
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict):
                    raise _bad("Each tool call needs a function.", f"{param}.tool_calls")
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.get("id"),
                        "name": function.get("name"),
                        "arguments": function.get("arguments") or "",
                    }
                )
        elif role == "tool":
            assert isinstance(message, dict)
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.get("tool_call_id"),
                    "output": _text(content, param),
                }
            )
        else:
            raise _bad(f"Message role {role!r} is not supported.", f"{param}.role")
    return "\n\n".join(instructions), items


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("'tools' must be a list.", "tools")
    out = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
        ):
            raise _bad("Only function tools are supported.", f"tools[{index}]")
        converted = {"type": "function", "name": function.get("name")}
        for name in ("description", "parameters", "strict"):
            if name in function:
                converted[name] = function[name]
        out.append(converted)
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        function = choice.get("function")
        if choice.get("type") != "function" or not isinstance(function, dict):
            raise _bad("'tool_choice' must name a function.", "tool_choice")
        return {"type": "function", "name": function.get("name")}
    return choice


def _text_format(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict):
        raise _bad("'response_format' must be an object.", "response_format")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(schema := response_format.get("json_schema"), dict):
        return {"type": "json_schema", **schema}
    raise _bad(f"'response_format' type {kind!r} is not supported.", "response_format")


def include_usage(doc: dict[str, Any]) -> bool:
    """Whether a streaming client asked for the final usage chunk."""
    options = doc.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def to_responses(doc: dict[str, Any]) -> dict[str, Any]:
    """The Responses request for the Chat Completions request ``doc``; 400 on what cannot map."""
    for name, why in REFUSED.items():
        value = doc.get(name)
        if value is not None and value is not False:
            raise _bad(f"Unsupported parameter: '{name}': {why}.", name)
    n = doc.get("n")
    if n is not None and n != 1:
        raise _bad("Only one choice ('n': 1) is supported.", "n")
    instructions, items = _input(doc.get("messages"))
    body: dict[str, Any] = {
        "model": doc.get("model"),
        "instructions": instructions,
        "input": items,
        "stream": doc.get("stream") is True,
    }
    for name in _PASSED:
        if doc.get(name) is not None:
            body[name] = doc[name]
    tools = doc.get("tools") if doc.get("tools") is not None else doc.get("functions")
    if tools is not None:
        if doc.get("tools") is None:
            if not isinstance(tools, list):
                raise _bad("'functions' must be a list.", "functions")
            tools = [{"type": "function", "function": f} for f in tools]
        body["tools"] = _tools(tools)
    if doc.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(doc["tool_choice"])
    elif isinstance(legacy := doc.get("function_call"), dict):
        body["tool_choice"] = {"type": "function", "name": legacy.get("name")}
    elif isinstance(legacy, str):
        body["tool_choice"] = legacy
    text: dict[str, Any] = {}
    if doc.get("response_format") is not None and (form := _text_format(doc["response_format"])):
        text["format"] = form
    if doc.get("verbosity") is not None:
        text["verbosity"] = doc["verbosity"]
    if text:
        body["text"] = text
    if doc.get("reasoning_effort") is not None:
        body["reasoning"] = {"effort": doc["reasoning_effort"]}
    return body


# The answer ---------------------------------------------------------------------------------


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """A Responses ``usage`` object as Chat Completions reports it."""
    if not isinstance(usage, dict):
        return None
    prompt = _seconds(usage.get("input_tokens"))
    completion_tokens = _seconds(usage.get("output_tokens"))
    details = _object(usage.get("input_tokens_details"))
    out_details = _object(usage.get("output_tokens_details"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": _seconds(usage.get("total_tokens")) or prompt + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": _seconds(details.get("cached_tokens"))},
        "completion_tokens_details": {
            "reasoning_tokens": _seconds(out_details.get("reasoning_tokens"))
        },
    }


def finish_reason(response: dict[str, Any], tool_calls: bool) -> str:
    """``length`` or ``content_filter`` for an incomplete response, else ``tool_calls`` when
    the model called a function, else ``stop``."""
    if response.get("status") == "incomplete":
        details = _object(response.get("incomplete_details"))
        return "content_filter" if details.get("reason") == "content_filter" else "length"
    return "tool_calls" if tool_calls else "stop"


def _object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one: upstream documents are not trusted
    to have the documented shape, and a surprise must not end a relayed stream."""
    return value if isinstance(value, dict) else {}


def _seconds(value: Any) -> int:
    """A whole number (seconds, tokens) from an upstream field; 0 when it is not a number."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _completion_id(response_id: Any, fallback: str) -> str:
    return "chatcmpl-" + (response_id if isinstance(response_id, str) else fallback)


def completion(response: dict[str, Any], request_id: str, model: str) -> dict[str, Any]:
    """The ``chat.completion`` of an assembled Response."""
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            parts = item.get("content")
            for part in map(_object, parts if isinstance(parts, list) else ()):
                if part.get("type") == "output_text":
                    texts.append(str(part.get("text") or ""))
                elif part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal") or ""))
        elif item.get("type") == "function_call":
            calls.append(
                {
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments")},
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": "".join(refusals) if refusals else None,
    }
    if calls:
        message["tool_calls"] = calls
    return {
        "id": _completion_id(response.get("id"), request_id),
        "object": "chat.completion",
        "created": _seconds(response.get("created_at")),
        "model": response.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(response, bool(calls)),
            }
        ],
        "usage": chat_usage(response.get("usage")),
        "system_fingerprint": None,
    }


DONE = b"data: [DONE]\n\n"


class ChunkStream:
    """Responses events in, Chat Completions chunks out, for one streamed answer."""

    __slots__ = ("_buf", "_calls", "_created", "_id", "_model", "_streamed", "_usage", "ended")

    def __init__(self, request_id: str, model: str, *, usage: bool) -> None:
        self._buf = b""
        self._id = _completion_id(None, request_id)
        self._model = model
        self._created = 0
        self._usage = usage
        self._calls: dict[str, int] = {}
        """Each function call's item id and its ``tool_calls`` index."""
        self._streamed: set[str] = set()
        """Calls whose arguments arrived as deltas (else they are sent whole when done)."""
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        """The chunks for the whole events in ``data`` (a partial event waits for the rest)."""
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        start = 0
        while (end := buf.find(b"\n\n", start)) >= 0:
            doc = event_data(buf[start:end])
            if isinstance(doc, dict) and not self.ended:
                self._translate(doc, out)
            start = end + 2
        self._buf = buf[start:]
        return b"".join(out)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._line([choice])

    def _line(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        doc = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    def _call(self, item: dict[str, Any], out: list[bytes]) -> str:
        """Open the function call ``item`` (once) and return its item id."""
        item_id = str(item.get("id") or item.get("call_id"))
        if item_id not in self._calls:
            index = self._calls[item_id] = len(self._calls)
            call = {
                "index": index,
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [call]}))
        return item_id

    def _arguments(self, item_id: str, arguments: str, out: list[bytes]) -> None:
        call = {"index": self._calls[item_id], "function": {"arguments": arguments}}
        out.append(self._chunk({"tool_calls": [call]}))

    def _translate(self, doc: dict[str, Any], out: list[bytes]) -> None:
        kind = doc.get("type")
        if kind == "response.output_text.delta":
            out.append(self._chunk({"content": doc.get("delta") or ""}))
        elif kind == "response.function_call_arguments.delta":
            item_id = str(doc.get("item_id"))
            if item_id in self._calls:
                self._streamed.add(item_id)
                self._arguments(item_id, str(doc.get("delta") or ""), out)
        elif kind in ("response.output_item.added", "response.output_item.done"):
            item = doc.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                item_id = self._call(item, out)
                done = kind == "response.output_item.done"
                if done and item_id not in self._streamed and item.get("arguments"):
                    self._streamed.add(item_id)
                    self._arguments(item_id, str(item["arguments"]), out)
        elif kind == "response.created":
            response = _object(doc.get("response"))
            if isinstance(response.get("id"), str):
                self._id = _completion_id(response["id"], self._id)
            self._created = _seconds(response.get("created_at"))
            if isinstance(response.get("model"), str):
                self._model = response["model"]
            out.append(self._chunk({"role": "assistant", "content": ""}))
        elif kind in ("response.completed", "response.incomplete"):
            response = _object(doc.get("response"))
            out.append(self._chunk({}, finish_reason(response, bool(self._calls))))
            if self._usage:
                out.append(self._line([], usage=chat_usage(response.get("usage"))))
            out.append(DONE)
            self.ended = True
        elif kind in ("response.failed", "error"):
            error = _object(_object(doc.get("response")).get("error") or doc.get("error"))
            body = {
                "error": {
                    "message": error.get("message") or "The upstream response failed.",
                    "type": error.get("type") or "server_error",
                    "code": error.get("code"),
                    "param": None,
                }
            }
            out.append(b"data: " + orjson.dumps(body) + b"\n\n")
            self.ended = True
