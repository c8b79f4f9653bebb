"""Provider records (SPEC.md section 4): the registry of ChatGPT accounts and their tokens.

``Keys.provider(name)`` is a hash; tokens are stored only as envelopes from
``codexpool_shared.crypto`` bound to (provider name, field name). ``credential_version`` is
bumped by every credential write, and writes after a refresh compare-and-set on it, so a stale
refresh can never overwrite a newer credential.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError
from redis.typing import EncodableT

from codexpool_shared.crypto import Keyring
from codexpool_shared.events import ProviderStatus
from codexpool_shared.keys import Keys
from codexpool_shared.store.claims import account_claims
from codexpool_shared.store.errors import Conflict, InvalidField, NotFound
from codexpool_shared.store.pools import Pool

TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")
"""Fields that hold encrypted envelopes, never plaintext."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_STATUSES: frozenset[str] = frozenset({"active", "needs_reauth", "disabled"})

# Compare-and-set on credential_version: KEYS[1] provider hash; ARGV[1] expected version,
# ARGV[2..] field/value pairs. Returns the new version, or -1 when the version moved on.
_CAS_CREDENTIALS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local current = tonumber(redis.call('HGET', KEYS[1], 'credential_version') or '0')
if current ~= tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return redis.call('HINCRBY', KEYS[1], 'credential_version', 1)
"""

# Status change: KEYS[1] provider hash; ARGV[1] new status, ARGV[2] expected version or ''.
# Returns the previous status, or false when the provider is missing or the version moved on.
_SET_STATUS = """
local prev = redis.call('HGET', KEYS[1], 'status')
if not prev then return false end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'credential_version') ~= ARGV[2] then
  return false
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return prev
"""


class Provider(BaseModel):
    """A provider as anyone may see it: no token material."""

    model_config = ConfigDict(frozen=True)

    name: str
    account_id: str
    email: str | None = None
    plan_type: str | None = None
    status: ProviderStatus
    access_expires_at: int | None = None
    last_refresh: int | None = None
    credential_version: int
    created_at: int


class StoredCredentials(BaseModel):
    """The encrypted credentials of a provider as stored, with the version they belong to."""

    model_config = ConfigDict(frozen=True)

    name: str
    account_id: str
    status: ProviderStatus
    access_token: str
    refresh_token: str | None
    access_expires_at: int | None
    credential_version: int


def _text(raw: Any) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _int(raw: Any) -> int | None:
    text = _text(raw)
    return int(float(text)) if text not in (None, "") else None


def _decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k) or "": _text(v) or "" for k, v in raw.items()}


def _provider(fields: dict[str, str]) -> Provider:
    return Provider(
        name=fields["name"],
        account_id=fields.get("account_id", ""),
        email=fields.get("email") or None,
        plan_type=fields.get("plan_type") or None,
        status=fields.get("status", "active"),  # type: ignore[arg-type]
        access_expires_at=_int(fields.get("access_expires_at")),
        last_refresh=_int(fields.get("last_refresh")),
        credential_version=_int(fields.get("credential_version")) or 0,
        created_at=_int(fields.get("created_at")) or 0,
    )


def validate_name(name: str, field: str = "name") -> str:
    """Reject anything but a slug (1-63 of a-z, 0-9, '.', '_', '-')."""
    if not _NAME.match(name):
        raise InvalidField(field, "must be 1-63 characters of a-z, 0-9, '.', '_' or '-'")
    return name


def _last_refresh(doc: Mapping[str, Any], now: int) -> int:
    value = doc.get("last_refresh")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            raise InvalidField("auth_json.last_refresh", "is not an RFC 3339 time") from None
    return now


def _token(tokens: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    value = tokens.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidField(f"auth_json.tokens.{field}", "must be a non-empty string")
    return value


async def register_provider(
    redis: Redis,
    keys: Keys,
    keyring: Keyring,
    name: str,
    auth_json: Mapping[str, Any],
    *,
    replace: bool = False,
    now: int | None = None,
) -> Provider:
    """Register (or with ``replace`` re-link) a provider from a Codex ``auth.json`` document.

    Account id, email and plan come from the id_token claims (else the access token's); the
    access expiry from the access token's ``exp``.

    Args:
        redis: The Redis client.
        keys: Key names of the namespace.
        keyring: Encrypts the tokens.
        name: The provider's slug.
        auth_json: ``{"tokens": {"id_token", "access_token", "refresh_token", "account_id"},
            "last_refresh": ...}``.
        replace: Overwrite an existing provider's credentials (keeps its status and creation).
        now: Epoch seconds, for tests.

    Returns:
        The stored provider.

    Raises:
        InvalidField: The name or the document is malformed.
        Conflict: The name is taken and ``replace`` is false.
    """
    validate_name(name)
    now = int(time.time()) if now is None else now
    tokens = auth_json.get("tokens") if isinstance(auth_json, Mapping) else None
    if not isinstance(tokens, Mapping):
        raise InvalidField("auth_json.tokens", "must be an object with the account's tokens")
    access = _token(tokens, "access_token", required=True)
    refresh = _token(tokens, "refresh_token", required=True)
    id_token = _token(tokens, "id_token", required=False)
    claims = account_claims(id_token, access)
    account_id = tokens.get("account_id") or claims.account_id
    if not isinstance(account_id, str) or not account_id:
        raise InvalidField("auth_json.tokens.account_id", "missing, and not in the id_token")
    plain = {"access_token": access, "refresh_token": refresh, "id_token": id_token}
    fields: dict[EncodableT, EncodableT] = {
        "name": name,
        "account_id": account_id,
        "email": claims.email or "",
        "plan_type": claims.plan_type or "",
        "access_expires_at": claims.access_expires_at or "",
        "last_refresh": _last_refresh(auth_json, now),
    }
    for field, value in plain.items():
        fields[field] = keyring.encrypt(value, record=name, field=field) if value else ""
    key = keys.provider(name)
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(key)
        exists = await pipe.exists(key)
        if exists and not replace:
            raise Conflict("name", f"provider {name!r} is already registered")
        pipe.multi()  # type: ignore[no-untyped-call]
        if not exists:
            fields.update(status="active", created_at=now, credential_version=0)
        pipe.hset(key, mapping=fields)
        pipe.hincrby(key, "credential_version", 1)
        pipe.sadd(keys.providers, name)
        await pipe.execute()
    return await get_provider(redis, keys, name)


async def get_provider(redis: Redis, keys: Keys, name: str) -> Provider:
    """The provider ``name``; raises ``NotFound``."""
    raw = await redis.hgetall(keys.provider(name))
    if not raw:
        raise NotFound("provider", name)
    return _provider(_decode(raw))


async def list_providers(redis: Redis, keys: Keys) -> list[Provider]:
    """Every registered provider, sorted by name."""
    names = sorted(_text(n) or "" for n in await redis.smembers(keys.providers))
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.provider(name))
        rows = await pipe.execute()
    return [_provider(_decode(row)) for row in rows if row]


async def delete_provider(redis: Redis, keys: Keys, name: str) -> None:
    """Remove a provider and its live state (pools that list it then skip it)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.provider(name), keys.live(name), keys.health(name))
        pipe.srem(keys.providers, name)
        await pipe.execute()


class ProviderInUse(Conflict):
    """A provider cannot be deleted without ``force``: pools list it (``agent_ids``, sorted)."""

    def __init__(self, name: str, agent_ids: list[str]) -> None:
        """Refuse to delete ``name`` because the pools of ``agent_ids`` hold it."""
        super().__init__("name", f"provider {name!r} is in the pools of: {', '.join(agent_ids)}")
        self.name = name
        self.agent_ids = agent_ids


class PoolMemberRemoved(BaseModel):
    """One pool a provider deletion changed: as it was read, and as written (version bumped)."""

    model_config = ConfigDict(frozen=True)

    before: Pool
    after: Pool


class ProviderDeleted(BaseModel):
    """What ``delete_provider_from_pools`` did: the provider as it was, and each pool changed."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    pools: tuple[PoolMemberRemoved, ...]
    """Sorted by agent id; empty when no pool held the provider."""


DELETE_ATTEMPTS = 8
"""How many times a provider deletion retries after a concurrent change of what it read."""


async def _pools_holding(pipe: Pipeline, keys: Keys, name: str) -> list[Pool]:
    """Under WATCH: watch every agent's pool key, then read those pools; those listing ``name``."""
    agent_ids = sorted(_text(a) or "" for a in await pipe.smembers(keys.agents))
    if not agent_ids:
        return []
    await pipe.watch(*(keys.pool(agent_id) for agent_id in agent_ids))
    holding = []
    for agent_id in agent_ids:
        raw = _decode(await pipe.hgetall(keys.pool(agent_id)))
        if not raw:
            continue
        members = tuple(orjson.loads(raw.get("providers") or "[]"))
        if name in members:
            holding.append(
                Pool(
                    agent_id=agent_id,
                    strategy=raw["strategy"],  # type: ignore[arg-type]
                    providers=members,
                    version=_int(raw.get("version")) or 0,
                )
            )
    return holding


async def delete_provider_from_pools(
    redis: Redis, keys: Keys, name: str, *, force: bool, attempts: int = DELETE_ATTEMPTS
) -> ProviderDeleted:
    """Delete a provider and, with ``force``, remove it from every pool, in one transaction.

    Optimistic: WATCH the provider, the agent set and every agent's pool, read them, then one
    MULTI/EXEC removes the member from each pool holding it (bumping each ``version``), deletes
    the provider record and its live state. If any watched key changed in between (a pool edited,
    an agent or pool created, the provider re-linked or re-enabled) EXEC writes nothing and the
    whole read is done again, so the outcome is all or nothing: the provider is either still
    registered and in its pools, or gone from every pool and from the registry. Pools left with
    no member stay (as ``remove_member`` leaves them).

    Args:
        redis: The Redis client.
        keys: Key names.
        name: The provider.
        force: Remove it from the pools holding it; without it, such pools refuse the deletion.
        attempts: Transactions tried before giving up on a store that keeps changing.

    Returns:
        The provider as deleted and each pool changed (before, and after with its new version).

    Raises:
        NotFound: The provider does not exist.
        ProviderInUse: ``force`` is false and pools hold the provider (nothing is written).
        Conflict: The pools kept changing for ``attempts`` tries (nothing is written).
    """
    provider_key = keys.provider(name)
    for _ in range(attempts):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(provider_key, keys.agents)
                raw = await pipe.hgetall(provider_key)
                if not raw:
                    raise NotFound("provider", name)
                provider = _provider(_decode(raw))
                holding = await _pools_holding(pipe, keys, name)
                if holding and not force:
                    raise ProviderInUse(name, [p.agent_id for p in holding])
                pipe.multi()  # type: ignore[no-untyped-call]
                for pool in holding:
                    kept = [m for m in pool.providers if m != name]
                    pipe.hset(keys.pool(pool.agent_id), "providers", orjson.dumps(kept).decode())
                    pipe.hincrby(keys.pool(pool.agent_id), "version", 1)
                pipe.delete(provider_key, keys.live(name), keys.health(name))
                pipe.srem(keys.providers, name)
                replies = await pipe.execute()
            except WatchError:
                continue
        changed = tuple(
            PoolMemberRemoved(
                before=pool,
                after=pool.model_copy(
                    update={
                        "providers": tuple(m for m in pool.providers if m != name),
                        "version": int(replies[2 * i + 1]),
                    }
                ),
            )
            for i, pool in enumerate(holding)
        )
        return ProviderDeleted(provider=provider, pools=changed)
    raise Conflict("name", f"the pools holding provider {name!r} kept changing; retry")


async def read_credentials(redis: Redis, keys: Keys, name: str) -> StoredCredentials:
    """The provider's encrypted credentials and their version; raises ``NotFound``."""
    raw = await redis.hgetall(keys.provider(name))
    if not raw:
        raise NotFound("provider", name)
    f = _decode(raw)
    return StoredCredentials(
        name=name,
        account_id=f.get("account_id", ""),
        status=f.get("status", "active"),  # type: ignore[arg-type]
        access_token=f.get("access_token", ""),
        refresh_token=f.get("refresh_token") or None,
        access_expires_at=_int(f.get("access_expires_at")),
        credential_version=_int(f.get("credential_version")) or 0,
    )


async def write_tokens(
    redis: Redis,
    keys: Keys,
    keyring: Keyring,
    name: str,
    *,
    expected_version: int,
    tokens: Mapping[str, str | None],
    now: int | None = None,
) -> int | None:
    """Store rotated tokens if the credential is still at ``expected_version``.

    Args:
        redis: The Redis client.
        keys: Key names.
        keyring: Encrypts the tokens.
        name: The provider.
        expected_version: The ``credential_version`` the tokens were refreshed from.
        tokens: ``access_token`` and optionally ``refresh_token`` / ``id_token`` (``None`` or
            absent fields are kept as stored).
        now: Epoch seconds, for tests.

    Returns:
        The new credential version, or ``None`` when another writer got there first.

    Raises:
        NotFound: The provider does not exist.
    """
    now = int(time.time()) if now is None else now
    args: list[str | int] = [expected_version]
    for field in TOKEN_FIELDS:
        value = tokens.get(field)
        if value:
            args += [field, keyring.encrypt(value, record=name, field=field)]
    claims = account_claims(tokens.get("id_token"), tokens.get("access_token"))
    args += ["access_expires_at", claims.access_expires_at or "", "last_refresh", now]
    result = await redis.register_script(_CAS_CREDENTIALS)(keys=[keys.provider(name)], args=args)
    if result == -2:
        raise NotFound("provider", name)
    return None if result == -1 else int(result)


async def set_provider_status(
    redis: Redis,
    keys: Keys,
    name: str,
    status: Literal["active", "needs_reauth", "disabled"],
    *,
    expected_version: int | None = None,
) -> str | None:
    """Set the status; with ``expected_version``, only if the credential is still that one.

    Returns:
        The previous status, or ``None`` when nothing was changed (missing or stale).
    """
    if status not in _STATUSES:
        raise InvalidField("status", f"must be one of {sorted(_STATUSES)}")
    prev = await redis.register_script(_SET_STATUS)(
        keys=[keys.provider(name)],
        args=[status, "" if expected_version is None else expected_version],
    )
    return _text(prev) if prev else None
