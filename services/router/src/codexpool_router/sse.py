"""Watching an SSE stream pass by: only terminal events (and, when asked, output items) are
decoded; every other event is recognised by its ``event:`` line and left alone.

Events are separated by a blank line (``\\n\\n``), the framing the Codex backend uses.
"""

from __future__ import annotations

from typing import Any

import orjson

from codexpool_shared.events import OutcomeClass, TokenUsage

_TERMINAL = frozenset({b"response.completed", b"response.failed", b"response.incomplete", b"error"})
_ITEM_DONE = b"response.output_item.done"
_CREATED = b"response.created"
_COMPLETED_LINE = b"event: response.completed"


def event_data(block: bytes) -> Any:
    """The JSON of the event ``block``'s ``data:`` line; None if it has none or it is not JSON."""
    start = block.find(b"data:")
    if start < 0:
        return None
    end = block.find(b"\n", start)
    payload = block[start + 5 : end if end >= 0 else len(block)]
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _type(buf: bytes, start: int, end: int) -> bytes:
    """The type of the event ``buf[start:end]``, without copying the event."""
    if buf.startswith(b"event:", start, end):
        line_end = buf.find(b"\n", start, end)
        return buf[start + 6 : line_end if line_end >= 0 else end].strip()
    # Without an event line, the type is inside the JSON; only parse what could be terminal.
    head = buf[start : min(end, start + 80)]
    if b"response.completed" in head or b"response.failed" in head or b'"error"' in head:
        doc = event_data(buf[start:end])
        if isinstance(doc, dict) and isinstance(doc.get("type"), str):
            return str(doc["type"]).encode()
    return b""


class SseTap:
    """Fed every chunk of an upstream stream; remembers how it ended.

    The ``output_item.done`` and ``response.created`` events it collects are kept as they came
    and decoded only if ``items`` or ``created`` is read: a ``response.completed`` that lists
    its output, the usual case, needs neither.
    """

    __slots__ = (
        "_buf",
        "_collect",
        "_created",
        "_held",
        "_items",
        "_raw_created",
        "_raw_items",
        "completed",
        "failure",
        "terminal",
    )

    def __init__(self, *, collect: bool = False) -> None:
        self._buf = b""
        self._held = b""
        self._collect = collect
        self.terminal: bytes | None = None
        self.completed: dict[str, Any] | None = None
        self.failure: dict[str, Any] | None = None
        self._raw_items: list[bytes] = []
        self._items: dict[int, Any] = {}
        self._raw_created: bytes | None = None
        self._created: dict[str, Any] | None = None

    @property
    def items(self) -> dict[int, Any]:
        """Each ``output_item.done`` event's item, by its ``output_index``."""
        for block in self._raw_items:
            doc = event_data(block)
            if isinstance(doc, dict):
                self._items[int(doc.get("output_index", len(self._items)))] = doc.get("item")
        self._raw_items.clear()
        return self._items

    @property
    def created(self) -> dict[str, Any] | None:
        """The Response of the last ``response.created`` event."""
        if self._raw_created is not None:
            doc = event_data(self._raw_created)
            self._raw_created = None
            if isinstance(doc, dict) and isinstance(doc.get("response"), dict):
                self._created = doc["response"]
        return self._created

    def feed(self, chunk: bytes) -> None:
        buf = self._buf + chunk if self._buf else chunk
        start = 0
        while (end := buf.find(b"\n\n", start)) >= 0:
            self._event(buf, start, end)
            start = end + 2
        self._buf = buf[start:] if start else buf

    def relay(self, chunk: bytes) -> bytes:
        """Watch ``chunk`` and return what to forward: ``chunk`` itself, except that a
        ``response.completed`` with an empty ``output`` gets the streamed items filled in (so
        SDK helpers that read the final response see them). A completed event split over chunks
        is held back until it is whole.
        """
        if self._held:
            chunk, self._held = self._held + chunk, b""
            start = 0
        else:
            start = chunk.find(_COMPLETED_LINE)
            if start < 0:
                self.feed(chunk)
                return chunk
        end = chunk.find(b"\n\n", start)
        if end < 0:
            head = chunk[:start]
            self.feed(head)
            self._held = chunk[start:]
            return head
        # Feeding pieces one after the other is feeding them joined: the whole chunk at once.
        self.feed(chunk)
        block = chunk[start : end + 2]
        patched = self._patched(block)
        return chunk if patched is block else chunk[:start] + patched + chunk[end + 2 :]

    @property
    def at_boundary(self) -> bool:
        """Whether everything relayed so far ends between two events, with nothing held."""
        return not self._buf and not self._held

    def flush(self) -> bytes:
        """Whatever ``relay`` still holds when the stream ends."""
        held, self._held = self._held, b""
        return held

    def _patched(self, block: bytes) -> bytes:
        if self.completed is None or self.completed.get("output") or not self.items:
            return block
        doc = event_data(block)
        if not isinstance(doc, dict) or not isinstance(doc.get("response"), dict):
            return block
        doc["response"]["output"] = [self.items[i] for i in sorted(self.items)]
        return _COMPLETED_LINE + b"\ndata: " + orjson.dumps(doc) + b"\n\n"

    def _event(self, buf: bytes, start: int, end: int) -> None:
        while start < end and buf[start] in b"\r\n":
            start += 1
        kind = _type(buf, start, end)
        if kind in _TERMINAL:
            self.terminal = kind
            doc = event_data(buf[start:end])
            response = doc.get("response") if isinstance(doc, dict) else None
            if kind == b"response.completed" and isinstance(response, dict):
                self.completed = response
            elif isinstance(doc, dict):
                self.failure = doc
        elif self._collect:
            if kind == _ITEM_DONE:
                self._raw_items.append(buf[start:end])
            elif kind == _CREATED:
                self._raw_created = buf[start:end]

    def outcome(self) -> tuple[OutcomeClass, str | None]:
        """How the stream ended: success, or the class and code of its failure."""
        if self.terminal == b"response.completed":
            return "success", None
        if self.terminal is None:
            return "stream_error", "stream_closed_before_completed"
        code = _failure_code(self.failure)
        if code in ("rate_limit_exceeded", "usage_limit_reached"):
            return "rate_limited", code
        if code in ("context_length_exceeded", "invalid_prompt", "cyber_policy"):
            return "client_error", code
        return "stream_error", code or self.terminal.decode()

    def usage(self) -> TokenUsage | None:
        return usage_of(self.completed)

    def final_response(self) -> dict[str, Any]:
        """The Response object of ``response.completed``, its empty ``output`` rebuilt from the
        ``output_item.done`` events (a known backend quirk, protocol 4.2)."""
        response = dict(self.completed or {})
        if not response.get("output") and self.items:
            response["output"] = [self.items[i] for i in sorted(self.items)]
        for name, value in (self.created or {}).items():
            response.setdefault(name, value)
        response.setdefault("object", "response")
        response.setdefault("output", [])
        return response


def usage_of(response: Any) -> TokenUsage | None:
    """The token usage a Response (or a compaction answer) reports, if it is well formed."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    try:
        details = usage.get("input_tokens_details") or {}
        out_details = usage.get("output_tokens_details") or {}
        return TokenUsage(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            total_tokens=int(usage.get("total_tokens") or 0),
            cached_input_tokens=details.get("cached_tokens"),
            reasoning_output_tokens=out_details.get("reasoning_tokens"),
        )
    except (TypeError, ValueError, AttributeError):
        return None


def _failure_code(doc: dict[str, Any] | None) -> str | None:
    if not doc:
        return None
    response = doc.get("response")
    error = response.get("error") if isinstance(response, dict) else None
    error = error or doc.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return str(code) if code else None
    code = doc.get("code")
    return str(code) if code else None


def error_event(request_id: str, code: str, message: str) -> bytes:
    """A terminal ``response.failed`` event for a stream the router has to end itself."""
    doc = {
        "type": "response.failed",
        "response": {
            "id": f"resp_{request_id}",
            "object": "response",
            "status": "failed",
            "error": {"code": code, "message": message},
            "output": [],
            "usage": None,
        },
    }
    return b"event: response.failed\ndata: " + orjson.dumps(doc) + b"\n\n"
