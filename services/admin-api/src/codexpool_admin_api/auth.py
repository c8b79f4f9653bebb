"""Admin API bearer tokens: roles, hashed storage, and rate limiting of failed authentication.

A token is ``cpa_`` plus 256 random bits, so a single SHA-256 is an adequate at-rest form (no
slow hash needed: the token cannot be guessed, only stolen). The bootstrap admin token comes
from ``CODEXPOOL_ADMIN_TOKEN`` and is never stored. Admin tokens are a key space of their own,
apart from the ``cpk_`` router keys of agents (OWASP API5).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from codexpool_admin_api.metrics import Metrics
from codexpool_shared.crypto import secret_digest
from codexpool_shared.errors import ApiError
from codexpool_shared.keys import Keys
from codexpool_shared.store.replies import text

Role = Literal["admin", "viewer"]

TOKEN_PREFIX = "cpa_"
BOOTSTRAP_ID = "bootstrap"


class Principal(BaseModel):
    """Who is calling: a token's id, name and role, never the token itself."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    role: Role


class TokenRecord(BaseModel):
    """A stored admin API token, without the token."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str


class TokenStore:
    """Admin API tokens in Redis: record by SHA-256, plus an index id -> SHA-256 for listing."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def create(self, name: str, role: Role, created_by: str) -> tuple[TokenRecord, str]:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        sha = secret_digest(token)
        record = TokenRecord(
            id="tok_" + secrets.token_hex(8),
            name=name,
            role=role,
            created_at=datetime.now(UTC),
            created_by=created_by,
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.admin_token(sha), record.model_dump_json())
            pipe.hset(self._keys.admin_tokens, record.id, sha)
            await pipe.execute()
        return record, token

    async def list(self) -> list[TokenRecord]:
        shas = await self._redis.hgetall(self._keys.admin_tokens)
        if not shas:
            return []
        raws = await self._redis.mget([self._keys.admin_token(text(s)) for s in shas.values()])
        records = [TokenRecord.model_validate_json(raw) for raw in raws if raw is not None]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    async def revoke(self, token_id: str) -> TokenRecord | None:
        sha = await self._redis.hget(self._keys.admin_tokens, token_id)
        if sha is None:
            return None
        key = self._keys.admin_token(text(sha))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.delete(key)
            pipe.hdel(self._keys.admin_tokens, token_id)
            raw, *_ = await pipe.execute()
        return None if raw is None else TokenRecord.model_validate_json(raw)

    async def lookup(self, token: str) -> TokenRecord | None:
        raw = await self._redis.get(self._keys.admin_token(secret_digest(token)))
        return None if raw is None else TokenRecord.model_validate_json(raw)


class Authenticator:
    """Turns a presented bearer token into a ``Principal``, or refuses it.

    Failed attempts are counted per client address in Redis with a TTL (shared by every
    admin-api replica); past the limit the client gets 429 until the window ends, even with a
    correct token, so guessing cannot continue at full speed. Redis being down fails closed.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        tokens: TokenStore,
        bootstrap: str | None,
        *,
        max_failures: int,
        window_s: int,
        metrics: Metrics,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._tokens = tokens
        self._bootstrap_sha = None if not bootstrap else secret_digest(bootstrap).encode()
        self._max_failures = max_failures
        self._window_s = window_s
        self._metrics = metrics

    async def authenticate(self, token: str | None, client: str) -> Principal:
        counter = self._keys.auth_failures(client)
        failures = await self._redis.get(counter)
        if failures is not None and int(failures) >= self._max_failures:
            self._metrics.auth_failures.labels("rate_limited").inc()
            retry_after = max(1, await self._redis.ttl(counter))
            raise ApiError(
                429,
                "too many failed authentication attempts; retry later",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(retry_after)},
            )
        if not token:
            self._metrics.auth_failures.labels("missing_token").inc()
            raise _unauthorized("missing bearer token", code="missing_token")
        principal = await self._principal(token)
        if principal is None:
            self._metrics.auth_failures.labels("invalid_token").inc()
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, self._window_s, nx=True)
                await pipe.execute()
            raise _unauthorized("invalid bearer token", code="invalid_token")
        return principal

    async def _principal(self, token: str) -> Principal | None:
        # Both sides are hashed first, so compare_digest sees equal lengths and the comparison
        # time tells nothing about the bootstrap token.
        if self._bootstrap_sha is not None and hmac.compare_digest(
            secret_digest(token).encode(), self._bootstrap_sha
        ):
            return Principal(id=BOOTSTRAP_ID, name="bootstrap admin token", role="admin")
        record = await self._tokens.lookup(token)
        if record is None:
            return None
        return Principal(id=record.id, name=record.name, role=record.role)


def _unauthorized(message: str, *, code: str) -> ApiError:
    return ApiError(401, message, code=code, headers={"WWW-Authenticate": "Bearer"})
