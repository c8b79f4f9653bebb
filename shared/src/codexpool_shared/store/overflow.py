"""A pool's opt-in overflow endpoint (issue 19): where requests go when no member can serve.

An OpenAI-compatible Responses endpoint (an OpenAI API key, or any gateway speaking the same
API) that takes a request only when no OAuth member of the pool is eligible, so agents keep
working and pay per token instead of stopping until the reset. It is not a pool member (the
seed's rule: members are ChatGPT OAuth providers): it has no quota, cooldown, circuit or health
score, and it is off unless configured.

``Keys.overflow(agent_id)`` is a hash: the base URL in plain, the API key as an envelope bound
to (agent id, ``api_key``), never shown back.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store.errors import InvalidField
from codexpool_shared.store.replies import decode_hash

OVERFLOW: Final = "overflow"
"""The ``x-codexpool-provider`` of an answer the overflow served, and its name in metrics and
outcome events."""

_MAX_URL = 2048
_MAX_KEY = 4096
OVERFLOW_URL_PATTERN: Final = (
    r"^https?://[A-Za-z0-9\[][A-Za-z0-9.\-\[\]]*(:[0-9]{1,5})?(/[^\s?#]*)?$"
)
"""``pattern=`` of the base URL in the API schema (the port's range is checked in Python)."""
OVERFLOW_KEY_PATTERN: Final = r"^[\x21-\x7e]+$"
"""``pattern=`` of the API key: visible ASCII, no spaces (it goes in a header)."""


class OverflowFields:
    """Fields of the overflow hash (``Keys.overflow``)."""

    BASE_URL: Final = "base_url"
    API_KEY: Final = "api_key"


class OverflowShown(BaseModel):
    """The overflow as the API shows it: never the key."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    api_key_set: bool = True


class OverflowTarget(BaseModel):
    """What the router needs to send a request there."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    api_key: str


def validate_overflow(base_url: str, api_key: str) -> str:
    """The base URL without a trailing slash, once both values are usable.

    Raises:
        InvalidField: ``overflow.base_url`` or ``overflow.api_key`` is unusable (the message
            never repeats the key).
    """
    url = validate_base_url(base_url, "overflow.base_url")
    if len(api_key) > _MAX_KEY or not re.fullmatch(OVERFLOW_KEY_PATTERN, api_key):
        raise InvalidField("overflow.api_key", "must be a non-empty key without spaces")
    return url


def validate_base_url(base_url: str, field: str) -> str:
    """The base URL without a trailing slash, once it is usable.

    Raises:
        InvalidField: on ``field`` (an import checks an exported overflow's URL with it too).
    """
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidField(field, "malformed URL") from None
    if (
        len(base_url) > _MAX_URL
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username
        or parts.password
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in base_url)
    ):
        raise InvalidField(field, "must be http(s)://host[:port][/path], without credentials")
    return base_url.rstrip("/")


async def set_overflow(
    redis: Redis, keys: Keys, keyring: Keyring, agent_id: str, base_url: str, api_key: str
) -> OverflowShown:
    """Configure the pool's overflow (validated; the key encrypted)."""
    url = validate_overflow(base_url, api_key)
    envelope = keyring.encrypt(api_key, record=agent_id, field=OverflowFields.API_KEY)
    await redis.hset(
        keys.overflow(agent_id),
        mapping={OverflowFields.BASE_URL: url, OverflowFields.API_KEY: envelope},
    )
    return OverflowShown(base_url=url)


async def clear_overflow(redis: Redis, keys: Keys, agent_id: str) -> None:
    """Remove the pool's overflow (off: the documented 429 when every member is out)."""
    await redis.delete(keys.overflow(agent_id))


async def get_overflow(redis: Redis, keys: Keys, agent_id: str) -> OverflowShown | None:
    """The pool's overflow as shown (no key), or None."""
    fields = decode_hash(await redis.hgetall(keys.overflow(agent_id)))
    url = fields.get(OverflowFields.BASE_URL)
    return OverflowShown(base_url=url) if url else None


async def overflow_target(
    redis: Redis, keys: Keys, keyring: Keyring, agent_id: str
) -> OverflowTarget | None:
    """The pool's overflow with its key in plain (raises ``DecryptionError`` on a key mismatch)."""
    fields = decode_hash(await redis.hgetall(keys.overflow(agent_id)))
    url, envelope = fields.get(OverflowFields.BASE_URL), fields.get(OverflowFields.API_KEY)
    if not url or not envelope:
        return None
    key = keyring.decrypt(envelope, record=agent_id, field=OverflowFields.API_KEY)
    return OverflowTarget(base_url=url, api_key=key)
