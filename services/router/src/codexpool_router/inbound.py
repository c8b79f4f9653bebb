"""Reading a client request on the hot path: key, body, model, stream flag, session key.

Only what routing needs is parsed; the body is re-serialised only when a field the Codex
backend insists on must change (``store: false``, ``stream: true``, no ``max_output_tokens``).
A compressed body (``Content-Encoding`` gzip, deflate or zstd, as Codex clients send with
``request_compression``) is decoded here and goes upstream decoded.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import zstandard
from starlette.types import Scope

from codexpool_router import chat
from codexpool_shared.errors import ApiError
from codexpool_shared.store import key_digest

ASGIReceive = Any

# Fields the Codex backend rejects or that only make sense with stored responses
# (protocol section 3.3 and 11.4).
_STRIP = ("max_output_tokens", "previous_response_id", "stream_options", "safety_identifier")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def agent_key_digest(scope: Scope) -> str:
    value = header(scope, b"authorization")
    if not value or not value[:7].lower() == "bearer " or not value[7:].strip():
        raise ApiError(
            401,
            "Missing agent key: send 'Authorization: Bearer cpk_...'.",
            code="missing_api_key",
        )
    return key_digest(value[7:].strip())


async def read_body(scope: Scope, receive: ASGIReceive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(499, "client disconnected", code="client_closed_request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            raw = b"".join(chunks) if len(chunks) != 1 else chunks[0]
            return decode_content(raw, header(scope, b"content-encoding"), limit)


def decode_content(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """``raw`` without its content coding.

    The decoded size is held to ``limit`` as well, so a small compressed body cannot expand
    into an unbounded one (decompression stops one byte past the limit).
    """
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return raw
    try:
        if coding == "zstd":
            decoded = _zstd(raw, limit)
        elif coding in ("gzip", "x-gzip", "deflate"):
            # wbits 47 accepts a gzip or a zlib header; 15 is zlib ("deflate" as HTTP means it).
            decoded = zlib.decompressobj(47 if coding != "deflate" else 15).decompress(
                raw, limit + 1
            )
        else:
            raise ApiError(
                415,
                f"Content-Encoding {encoding!r} is not supported: use gzip, deflate, zstd or none.",
                code="unsupported_content_encoding",
                param="content-encoding",
            )
    except (zlib.error, zstandard.ZstdError):
        raise ApiError(
            400, f"Request body is not valid {coding} data.", code="invalid_content_encoding"
        ) from None
    if len(decoded) > limit:
        raise _too_large(limit)
    return decoded


def _zstd(raw: bytes, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
        while size <= limit and (part := reader.read(limit + 1 - size)):
            parts.append(part)
            size += len(part)
    return b"".join(parts)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"Request body is larger than {limit} bytes.", code="request_too_large", param="body"
    )


Dialect = Literal["responses", "chat", "compact"]
"""What the client speaks: the Responses API, Chat Completions (translated, ``chat.py``) or
remote compaction (one JSON answer, ``POST .../responses/compact``)."""


@dataclass(slots=True)
class Inbound:
    body: bytes
    """What goes upstream."""
    model: str
    stream: bool
    """Whether the client asked for a stream (the upstream always streams)."""
    session_digest: str
    dialect: Dialect = "responses"
    include_usage: bool = False
    """A streaming Chat Completions client asked for the final usage chunk."""


def parse_body(raw: bytes, session_header: str | None, dialect: Dialect = "responses") -> Inbound:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "Request body must be a JSON object.", code="invalid_json")
    include_usage = False
    if dialect == "chat":
        include_usage = chat.include_usage(doc)
        doc = chat.to_responses(doc)
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(
            400,
            "Missing required parameter: 'model'.",
            code="missing_required_parameter",
            param="model",
        )
    stream = doc.get("stream") is True
    metadata = doc.get("client_metadata")
    session = (
        doc.get("prompt_cache_key")
        or session_header
        or (metadata.get("session_id") if isinstance(metadata, dict) else None)
    )
    changed = dialect == "chat"
    # Compaction is one JSON answer: it has no stream flag and stores nothing.
    if dialect != "compact":
        if not stream:
            doc["stream"] = True
            changed = True
        if doc.get("store") is not False:
            doc["store"] = False
            changed = True
    for name in _STRIP:
        if name in doc:
            del doc[name]
            changed = True
    digest = hashlib.sha256(str(session).encode()).hexdigest()[:32] if session else ""
    return Inbound(
        orjson.dumps(doc) if changed else raw,
        model,
        stream and dialect != "compact",
        digest,
        dialect,
        include_usage,
    )
