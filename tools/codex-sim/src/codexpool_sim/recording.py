"""A bounded ring of every request the sim served, kept raw and decoded only when read."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

RawHeaders = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Recorded:
    seq: int
    at: float
    method: str
    path: str
    query: bytes
    headers: RawHeaders
    body: bytes
    account_id: str | None = None
    status: int | None = None
    fault: str | None = None

    def view(self) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for name, value in self.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        body: Any
        try:
            body = orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            body = self.body.decode("utf-8", "replace")
        return {
            "seq": self.seq,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "query": self.query.decode("latin-1"),
            "headers": headers,
            "body": body,
            "account_id": self.account_id,
            "status": self.status,
            "fault": self.fault,
        }


class Recorder:
    def __init__(self, limit: int) -> None:
        self._ring: deque[Recorded] = deque(maxlen=limit)
        self._seq = 0

    def record(
        self, method: str, path: str, query: bytes, headers: RawHeaders, body: bytes, at: float
    ) -> Recorded:
        self._seq += 1
        entry = Recorded(self._seq, at, method, path, query, headers, body)
        self._ring.append(entry)
        return entry

    def views(
        self, *, account_id: str | None = None, path: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        picked = [
            r
            for r in self._ring
            if (account_id is None or r.account_id == account_id)
            and (path is None or r.path == path)
        ]
        if limit is not None:
            picked = picked[-limit:] if limit > 0 else []
        return [r.view() for r in picked]

    def clear(self) -> int:
        dropped = len(self._ring)
        self._ring.clear()
        return dropped
