"""The §10.1 event transcript, serialized once per request shape.

Per-request values (response id, creation time) are placeholders that survive serialization, so
a request costs two ``bytes.replace`` calls instead of building and dumping a dozen events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

# orjson escapes NUL, so these can never come out of user-supplied text unescaped.
_RID = "\x00rid\x00"
_CREATED = "\x00at\x00"
RID_MARK = b"\\u0000rid\\u0000"
CREATED_MARK = b'"\\u0000at\\u0000"'

Event = dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 1234
    cached_tokens: int = 1024
    output_tokens: int = 56
    reasoning_tokens: int = 32

    def view(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


@dataclass(frozen=True)
class Shape:
    """Everything that makes two transcripts differ, except the per-request placeholders."""

    model: str
    text: str
    reasoning: bool
    function_call: bool
    full_output: bool
    usage: Usage
    incomplete_reason: str | None = None


@dataclass(frozen=True)
class Transcript:
    frames: tuple[bytes, ...]
    body: bytes

    @property
    def blob(self) -> bytes:
        return b"".join(self.frames)


def render(template: bytes, response_id: bytes, created_at: bytes) -> bytes:
    return template.replace(RID_MARK, response_id).replace(CREATED_MARK, created_at)


def frame(event: Event) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _response(model: str, status: str, output: list[Event], usage: Any) -> Event:
    return {
        "id": _RID,
        "object": "response",
        "created_at": _CREATED,
        "status": status,
        "model": model,
        "output": output,
        "usage": usage,
        "error": None,
        "incomplete_details": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


class _Events:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.append({"type": kind, "sequence_number": len(self.events), **fields})


def _text_part(text: str) -> Event:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(ev: _Events, index: int, text: str) -> Event:
    item_id = "msg_" + _RID
    item = {"id": item_id, "type": "message", "role": "assistant"}
    ev.emit(
        "response.output_item.added",
        output_index=index,
        item={**item, "status": "in_progress", "content": []},
    )
    at = {"item_id": item_id, "output_index": index, "content_index": 0}
    ev.emit("response.content_part.added", **at, part=_text_part(""))
    for delta in re.findall(r"\s*\S+", text):
        ev.emit("response.output_text.delta", **at, delta=delta, logprobs=[])
    ev.emit("response.output_text.done", **at, text=text, logprobs=[])
    ev.emit("response.content_part.done", **at, part=_text_part(text))
    done = {**item, "status": "completed", "content": [_text_part(text)]}
    ev.emit("response.output_item.done", output_index=index, item=done)
    return done


def _reasoning(ev: _Events, index: int) -> Event:
    item = {"id": "rs_" + _RID, "type": "reasoning", "summary": []}
    ev.emit("response.output_item.added", output_index=index, item=item)
    done = {**item, "encrypted_content": "gAAAAB-codex-sim-encrypted-reasoning"}
    ev.emit("response.output_item.done", output_index=index, item=done)
    return done


def _function_call(ev: _Events, index: int) -> Event:
    arguments = '{"command":["ls","-la"]}'
    item = {"id": "fc_" + _RID, "type": "function_call", "call_id": "call_" + _RID, "name": "shell"}
    ev.emit(
        "response.output_item.added",
        output_index=index,
        item={**item, "status": "in_progress", "arguments": ""},
    )
    at = {"item_id": item["id"], "output_index": index}
    ev.emit("response.function_call_arguments.delta", **at, delta=arguments)
    ev.emit("response.function_call_arguments.done", **at, arguments=arguments)
    done = {**item, "status": "completed", "arguments": arguments}
    ev.emit("response.output_item.done", output_index=index, item=done)
    return done


def build(shape: Shape) -> Transcript:
    ev = _Events()
    ev.emit("response.created", response=_response(shape.model, "in_progress", [], None))
    ev.emit("response.in_progress", response=_response(shape.model, "in_progress", [], None))
    output: list[Event] = []
    if shape.reasoning:
        output.append(_reasoning(ev, len(output)))
    output.append(_message(ev, len(output), shape.text))
    if shape.function_call:
        output.append(_function_call(ev, len(output)))
    status = "completed" if shape.incomplete_reason is None else "incomplete"
    final = _response(shape.model, status, output if shape.full_output else [], shape.usage.view())
    if shape.incomplete_reason is not None:
        final["incomplete_details"] = {"reason": shape.incomplete_reason}
    ev.emit(f"response.{status}", response=final)
    body = orjson.dumps(final)
    return Transcript(tuple(frame(e) for e in ev.events), body)


def failed(model: str, code: str, message: str, *, error_event: bool = False) -> Transcript:
    """``response.created`` then ``response.failed`` (§10.2), or a bare ``error`` event (§4.4).

    The JSON answer is the failed response either way. Nothing here is worth caching.
    """
    ev = _Events()
    ev.emit("response.created", response=_response(model, "in_progress", [], None))
    final = _response(model, "failed", [], None)
    final["error"] = {"code": code, "message": message}
    if error_event:
        ev.emit("error", error={"type": "server_error", "code": code, "message": message})
    else:
        ev.emit("response.failed", response=final)
    return Transcript(tuple(frame(e) for e in ev.events), orjson.dumps(final))


class TranscriptCache:
    """Transcripts by shape; bounded, because models and texts come from clients."""

    def __init__(self, limit: int = 256) -> None:
        self._limit = limit
        self._cache: dict[Shape, Transcript] = {}

    def get(self, shape: Shape) -> Transcript:
        found = self._cache.get(shape)
        if found is None:
            if len(self._cache) >= self._limit:
                self._cache.clear()
            found = self._cache[shape] = build(shape)
        return found
