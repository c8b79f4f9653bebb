"""Pending device-code logins that re-link a provider or register one (``Keys.oauth_device``).

One hash per provider, with the issuer's expiry as its TTL, so any admin-api replica can complete
a login another one started. The device id is a credential of the login in progress: it is
stored encrypted, like the provider's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store.replies import decode_hash


class DeviceLoginFields:
    """Field names of the pending-login hash."""

    DEVICE_AUTH_ID: Final = "device_auth_id"
    """The issuer's device id, an encrypted envelope (associated data: provider + this name)."""
    USER_CODE: Final = "user_code"
    """The code the admin enters at the issuer's device page."""
    REGISTER: Final = "register"
    """``"1"`` when the login registers a new provider rather than re-linking one."""


@dataclass(frozen=True, slots=True)
class PendingDeviceLogin:
    """A device-code login that was started and not completed yet."""

    device_auth_id: str
    user_code: str
    register: bool = False
    """The approved account becomes a new provider of this name (else it re-links one)."""


async def start_device_login(
    redis: Redis,
    keys: Keys,
    keyring: Keyring,
    provider: str,
    login: PendingDeviceLogin,
    *,
    expires_in_s: int,
) -> None:
    """Store ``login`` for ``provider``, replacing any pending one; it expires with the code.

    Args:
        redis: The Redis client.
        keys: Key names.
        keyring: Encrypts the device id.
        provider: The provider being re-linked (or registered).
        login: The issuer's device id and user code.
        expires_in_s: The issuer's expiry of the code.
    """
    key = keys.oauth_device(provider)
    device_auth_id = keyring.encrypt(
        login.device_auth_id, record=provider, field=DeviceLoginFields.DEVICE_AUTH_ID
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(
            key,
            mapping={
                DeviceLoginFields.DEVICE_AUTH_ID: device_auth_id,
                DeviceLoginFields.USER_CODE: login.user_code,
                DeviceLoginFields.REGISTER: "1" if login.register else "0",
            },
        )
        pipe.expire(key, expires_in_s)
        await pipe.execute()


async def pending_device_login(
    redis: Redis, keys: Keys, keyring: Keyring, provider: str
) -> PendingDeviceLogin | None:
    """The login pending for ``provider``, decrypted; ``None`` when none is (or it expired).

    Raises:
        DecryptionError: The device id cannot be decrypted with the configured keys.
    """
    fields = decode_hash(await redis.hgetall(keys.oauth_device(provider)))
    envelope = fields.get(DeviceLoginFields.DEVICE_AUTH_ID)
    user_code = fields.get(DeviceLoginFields.USER_CODE)
    if envelope is None or user_code is None:
        return None
    device_auth_id = keyring.decrypt(
        envelope, record=provider, field=DeviceLoginFields.DEVICE_AUTH_ID
    )
    return PendingDeviceLogin(
        device_auth_id=device_auth_id,
        user_code=user_code,
        register=fields.get(DeviceLoginFields.REGISTER) == "1",
    )


async def end_device_login(redis: Redis, keys: Keys, provider: str) -> None:
    """Forget the login pending for ``provider`` (it was approved, its code is spent)."""
    await redis.delete(keys.oauth_device(provider))
