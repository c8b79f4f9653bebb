"""Signed-in UI sessions (``Keys.ui_session``), shared by every UI replica.

One hash per session under the SHA-256 of the random id its cookie carries (the key reveals
nothing a cookie could be rebuilt from), with the sign-in's lifetime as its TTL. The admin API
token in it is an encrypted envelope, like a provider's tokens. Deleting the hash ends the
session everywhere at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from redis.asyncio import Redis

from codexpool_shared.crypto import DecryptionError, Keyring, secret_digest
from codexpool_shared.keys import Keys
from codexpool_shared.store.replies import decode_hash

_RECORD = "ui-session"


class UiSessionFields:
    """Field names of a UI session's hash."""

    TOKEN: Final = "token"
    """The admin API token, an encrypted envelope (associated data: ``ui-session`` + this name)."""
    NAME: Final = "name"
    """The token's name, as the admin API reported it."""
    ROLE: Final = "role"
    """``admin`` or ``viewer``, as the admin API reported it (it decides what the page shows)."""


@dataclass(frozen=True, slots=True)
class UiSession:
    """What a signed-in session holds."""

    token: str
    name: str
    role: str


class UiSessionStore(Protocol):
    """Where signed-in UI sessions live (Redis; unit tests use an in-memory one)."""

    async def save(self, sid: str, session: UiSession, *, ttl_s: int) -> None:
        """Store ``session`` under the session id ``sid`` for ``ttl_s`` seconds."""

    async def load(self, sid: str) -> UiSession | None:
        """The session ``sid`` names; None when it ended, expired or cannot be decrypted."""

    async def end(self, sid: str) -> None:
        """End the session ``sid`` names, for every replica."""

    async def ping(self) -> object:
        """Raise when the store cannot be reached (readiness)."""


class RedisUiSessions:
    """UI sessions in Redis, shared by every UI replica."""

    def __init__(self, redis: Redis, keys: Keys, keyring: Keyring) -> None:
        """Sessions in ``redis`` under ``keys``; tokens encrypted with ``keyring``."""
        self._redis = redis
        self._keys = keys
        self._keyring = keyring

    async def save(self, sid: str, session: UiSession, *, ttl_s: int) -> None:
        """Store ``session`` under the session id ``sid`` for ``ttl_s`` seconds."""
        key = self._keys.ui_session(secret_digest(sid))
        envelope = self._keyring.encrypt(session.token, record=_RECORD, field=UiSessionFields.TOKEN)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    UiSessionFields.TOKEN: envelope,
                    UiSessionFields.NAME: session.name,
                    UiSessionFields.ROLE: session.role,
                },
            )
            pipe.expire(key, ttl_s)
            await pipe.execute()

    async def load(self, sid: str) -> UiSession | None:
        """The session ``sid`` names; None when it ended, expired or cannot be decrypted."""
        stored = decode_hash(await self._redis.hgetall(self._keys.ui_session(secret_digest(sid))))
        envelope = stored.get(UiSessionFields.TOKEN)
        if envelope is None:
            return None
        try:
            token = self._keyring.decrypt(envelope, record=_RECORD, field=UiSessionFields.TOKEN)
        except DecryptionError:
            return None
        return UiSession(
            token=token,
            name=stored.get(UiSessionFields.NAME, ""),
            role=stored.get(UiSessionFields.ROLE, ""),
        )

    async def end(self, sid: str) -> None:
        """End the session ``sid`` names, for every replica."""
        await self._redis.delete(self._keys.ui_session(secret_digest(sid)))

    async def ping(self) -> object:
        """Raise when Redis cannot be reached (readiness)."""
        return await self._redis.ping()
