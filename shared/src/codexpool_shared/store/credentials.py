"""A provider's encrypted credentials: read with their version, rewritten only by compare-and-set.

Refresh tokens are single-use, so two writers must never both store what they refreshed: every
write names the ``credential_version`` it started from and loses if that moved on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.events import ProviderStatus
from codexpool_shared.keys import Keys
from codexpool_shared.store.claims import account_claims
from codexpool_shared.store.errors import NotFound
from codexpool_shared.store.providers import TOKEN_FIELDS, ProviderFields
from codexpool_shared.store.replies import decode_hash, optional_int, text
from codexpool_shared.store.scripts import render


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


# Compare-and-set on credential_version: KEYS[1] provider hash; ARGV[1] expected version,
# ARGV[2..] field/value pairs. Returns the new version, or -1 when the version moved on.
_CAS_CREDENTIALS = render(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local current = tonumber(
  redis.call('HGET', KEYS[1], '{{ProviderFields.CREDENTIAL_VERSION}}') or '0')
if current ~= tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return redis.call('HINCRBY', KEYS[1], '{{ProviderFields.CREDENTIAL_VERSION}}', 1)
""",
    ProviderFields,
)


async def read_credentials(redis: Redis, keys: Keys, name: str) -> StoredCredentials:
    """The provider's encrypted credentials and their version; raises ``NotFound``."""
    raw = await redis.hgetall(keys.provider(name))
    if not raw:
        raise NotFound("provider", name)
    f = decode_hash(raw)
    return StoredCredentials(
        name=name,
        account_id=f.get(ProviderFields.ACCOUNT_ID, ""),
        status=f.get(ProviderFields.STATUS, "active"),  # type: ignore[arg-type]
        access_token=f.get(ProviderFields.ACCESS_TOKEN, ""),
        refresh_token=f.get("refresh_token") or None,
        access_expires_at=optional_int(f.get(ProviderFields.ACCESS_EXPIRES_AT)),
        credential_version=optional_int(f.get(ProviderFields.CREDENTIAL_VERSION)) or 0,
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


async def check_secret_key(redis: Redis, keys: Keys, keyring: Keyring) -> None:
    """Raise ``DecryptionError`` when the keyring cannot decrypt a stored provider's tokens.

    Readiness of the services that decrypt: a wrong or missing ``CODEXPOOL_SECRET_KEY`` would
    otherwise pass every probe and fail every request. One provider, drawn at random, is
    enough: all are encrypted with the same keys. No provider yet is no mismatch.
    """
    name = await redis.srandmember(keys.providers)
    if not isinstance(name, bytes | str):
        return
    record = text(name)
    envelope = await redis.hget(keys.provider(record), ProviderFields.ACCESS_TOKEN)
    if envelope:
        keyring.decrypt(text(envelope), record=record, field=ProviderFields.ACCESS_TOKEN)
