"""Raw ASGI helpers for the hot paths, which skip Starlette's request/response objects."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.types import Receive, Send

Headers = list[tuple[bytes, bytes]]

JSON = (b"content-type", b"application/json")


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_bytes(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, document: Any, headers: Headers | None = None) -> None:
    await send_bytes(send, status, [JSON, *(headers or [])], orjson.dumps(document))


async def stall(receive: Receive, duration_ms: int) -> bool:
    """Wait ``duration_ms`` or until the client hangs up; True when it hung up."""
    try:
        async with asyncio.timeout(duration_ms / 1000):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


class _DeliberateCut(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def quiet_deliberate_cuts() -> None:
    """A ``cut_stream`` fault ends the response early on purpose; uvicorn need not log it."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DeliberateCut) for f in logger.filters):
        logger.addFilter(_DeliberateCut())
