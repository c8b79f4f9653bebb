"""Redis replies as text: the shared client returns bytes, and typing allows str as well."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text(raw: bytes | str | int | float) -> str:
    """A reply (or a member, key or field of one) as text."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def optional_int(raw: Any) -> int | None:
    """A numeric field, or None when it is missing or empty."""
    if raw is None:
        return None
    value = text(raw)
    return int(float(value)) if value else None


def decode_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    """An ``HGETALL`` reply as a dict of text."""
    return {text(k): text(v) for k, v in raw.items()}
