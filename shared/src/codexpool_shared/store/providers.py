"""Provider records (docs/SPEC.md section 4): the registry of ChatGPT accounts and their tokens.

``Keys.provider(name)`` is a hash; tokens are stored only as envelopes from
``codexpool_shared.crypto`` bound to (provider name, field name). ``credential_version`` is
bumped by every credential write; rotated tokens are written by compare-and-set on it
(``credentials.py``), and a provider is deleted, from its pools too, by ``removal.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from redis.typing import EncodableT

from codexpool_shared.crypto import Keyring
from codexpool_shared.events import ProviderStatus
from codexpool_shared.keys import Keys
from codexpool_shared.store.claims import account_claims
from codexpool_shared.store.egress import EgressFields
from codexpool_shared.store.errors import Conflict, InvalidField, NotFound
from codexpool_shared.store.overflow import OVERFLOW
from codexpool_shared.store.replies import decode_hash, optional_int, text
from codexpool_shared.store.scripts import render


class ProviderFields:
    """Field names of the provider hash (``Keys.provider``) that scripts read or write.

    The scripts are rendered from these (``store/scripts.py``).
    """

    STATUS: Final = "status"
    ACCOUNT_ID: Final = "account_id"
    ACCESS_TOKEN: Final = "access_token"
    ACCESS_EXPIRES_AT: Final = "access_expires_at"
    CREDENTIAL_VERSION: Final = "credential_version"
    MAX_CONCURRENT: Final = "max_concurrent"
    """Most in-flight requests across replicas (absent: no cap; ``store/leases.py``)."""


TOKEN_FIELDS = (ProviderFields.ACCESS_TOKEN, "refresh_token", "id_token")
"""Fields that hold encrypted envelopes, never plaintext."""

SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
"""A name fit for a Redis key, a header and a metric label; ``pattern=`` of every name field."""
_NAME = re.compile(SLUG_PATTERN)
_STATUSES: frozenset[str] = frozenset({"active", "needs_reauth", "disabled"})

# Status change: KEYS[1] provider hash; ARGV[1] new status, ARGV[2] expected version or ''.
# Returns the previous status, or false when the provider is missing or the version moved on.
_SET_STATUS = render(
    """
local prev = redis.call('HGET', KEYS[1], '{{ProviderFields.STATUS}}')
if not prev then return false end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], '{{ProviderFields.CREDENTIAL_VERSION}}') ~= ARGV[2]
then
  return false
end
redis.call('HSET', KEYS[1], '{{ProviderFields.STATUS}}', ARGV[1])
return prev
""",
    ProviderFields,
)


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
    proxy: str | None = None
    """Its egress proxy without user info (``store/egress.py``), or None: direct."""
    max_concurrent: int | None = None
    """Most in-flight requests across every router replica (``store/leases.py``), or None."""


def provider_from_hash(fields: dict[str, str]) -> Provider:
    """A provider from its decoded record."""
    return Provider(
        name=fields["name"],
        account_id=fields.get(ProviderFields.ACCOUNT_ID, ""),
        email=fields.get("email") or None,
        plan_type=fields.get("plan_type") or None,
        status=fields.get(ProviderFields.STATUS, "active"),  # type: ignore[arg-type]
        access_expires_at=optional_int(fields.get(ProviderFields.ACCESS_EXPIRES_AT)),
        last_refresh=optional_int(fields.get("last_refresh")),
        credential_version=optional_int(fields.get(ProviderFields.CREDENTIAL_VERSION)) or 0,
        created_at=optional_int(fields.get("created_at")) or 0,
        proxy=fields.get(EgressFields.PROXY) or None,
        max_concurrent=optional_int(fields.get(ProviderFields.MAX_CONCURRENT)),
    )


def validate_name(name: str, field: str = "name") -> str:
    """Reject anything but a slug (1-63 of a-z, 0-9, '.', '_', '-')."""
    if not _NAME.fullmatch(name):
        raise InvalidField(field, "must be 1-63 characters of a-z, 0-9, '.', '_' or '-'")
    return name


HEADER_SAFE_TEXT = r"^[\x21-\x7e]+$"
"""Visible ASCII only: a value sent upstream in a header (an account id)."""
_HEADER_SAFE = re.compile(HEADER_SAFE_TEXT)
PRINTABLE_TEXT = r"^[^\x00-\x1f\x7f]*$"
"""Text without control characters (NUL, ESC, CR/LF...): names shown on pages, logged, audited."""
_PRINTABLE = re.compile(PRINTABLE_TEXT)


def validate_identity(account_id: object, email: object, plan_type: object, where: str) -> None:
    """Reject an account id unfit for a header, or a control character in the email or plan.

    All three reach headers, logs and metric labels.

    Args:
        account_id: Sent upstream as the ``chatgpt-account-id`` header.
        email: Shown and logged.
        plan_type: Shown and logged.
        where: The field path the error names (``auth_json.tokens``, ``providers[0].record``).
    """
    if (
        not isinstance(account_id, str)
        or len(account_id) > 200
        or not _HEADER_SAFE.fullmatch(account_id)
    ):
        raise InvalidField(
            f"{where}.account_id", "must be 1-200 visible ASCII characters (it becomes a header)"
        )
    for field, value in (("email", email), ("plan_type", plan_type)):
        if value is not None and (
            not isinstance(value, str) or len(value) > 320 or not _PRINTABLE.fullmatch(value)
        ):
            raise InvalidField(f"{where}.{field}", "must be at most 320 printable characters")


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
    if name == OVERFLOW:
        # Metrics, spans and events name the pool's overflow endpoint so (issue 19).
        raise InvalidField("name", f"{OVERFLOW!r} is reserved for the pools' overflow endpoint")
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
    validate_identity(account_id, claims.email, claims.plan_type, "auth_json.tokens")
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
        # HLEN, not EXISTS: redis-py's cluster pipeline splits EXISTS by slot and drops its reply.
        exists = bool(await pipe.hlen(key))
        if exists and not replace:
            raise Conflict("name", f"provider {name!r} is already registered")
        pipe.multi()  # type: ignore[no-untyped-call]
        if not exists:
            fields.update(status="active", created_at=now, credential_version=0)
        pipe.hset(key, mapping=fields)
        pipe.hincrby(key, ProviderFields.CREDENTIAL_VERSION, 1)
        pipe.sadd(keys.providers, name)
        await pipe.execute()
    return await get_provider(redis, keys, name)


async def get_provider(redis: Redis, keys: Keys, name: str) -> Provider:
    """The provider ``name``; raises ``NotFound``."""
    raw = await redis.hgetall(keys.provider(name))
    if not raw:
        raise NotFound("provider", name)
    return provider_from_hash(decode_hash(raw))


async def list_providers(redis: Redis, keys: Keys) -> list[Provider]:
    """Every registered provider, sorted by name."""
    names = sorted(text(n) for n in await redis.smembers(keys.providers))
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.provider(name))
        rows = await pipe.execute()
    return [provider_from_hash(decode_hash(row)) for row in rows if row]


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
    return text(prev) if prev else None
