"""Identifiers: UUIDv7 event ids (time-ordered, so stores and logs sort them by creation)."""

from __future__ import annotations

import os
import time
import uuid


def _uuid7_int() -> int:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return value


def uuid7() -> uuid.UUID:
    """A version 7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits."""
    return uuid.UUID(int=_uuid7_int())


def uuid7_str() -> str:
    """``str(uuid7())`` without the ``UUID`` object, which costs more than the id itself.

    The router makes one per request, for its outcome event (``events.encode_outcome``).
    """
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
