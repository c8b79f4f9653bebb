"""Outcome classes of an upstream answer that is not a 200 stream (protocol section 9)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from codexpool_shared.events import OutcomeClass


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: OutcomeClass
    error_code: str | None
    failover: bool
    """Try the next provider (False: answer the client with this response)."""
    resets_at: int | None = None
    """Usage limit: when the account's quota comes back (epoch s)."""
    retry_after_s: float | None = None


def _error(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(doc, dict):
        return {}
    error = doc.get("error")
    if isinstance(error, dict):
        return error
    return {"code": error} if isinstance(error, str) else {}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return float(headers["retry-after"])
    except (KeyError, ValueError):
        return None


def classify(status: int, headers: Mapping[str, str], body: bytes, now: float) -> Verdict:
    """Classify a non-200 upstream answer. ``headers`` have lower-case names."""
    error = _error(body)
    code = error.get("code") or error.get("type")
    code = str(code) if code else None
    if status == 429:
        kind = error.get("type") or error.get("code")
        if kind in ("usage_limit_reached", "usage_not_included"):
            resets = _int(error.get("resets_at"))
            if resets is None and (after := _int(error.get("resets_in_seconds"))) is not None:
                resets = int(now) + after
            return Verdict("usage_limit", str(kind), True, resets_at=resets)
        return Verdict("rate_limited", code or "rate_limited", True, None, _retry_after(headers))
    if status == 401:
        return Verdict("auth_error", code or "unauthorized", True)
    if status == 403:
        text = body[:4096].lower()
        if b"cloudflare" in text:
            return Verdict("blocked", "cloudflare_blocked", True)
        return Verdict("auth_error", code or "forbidden", True)
    if status >= 500:
        return Verdict("server_error", code or f"http_{status}", True)
    if status == 408:
        return Verdict("timeout", code or "http_408", True)
    return Verdict("client_error", code or f"http_{status}", False)
