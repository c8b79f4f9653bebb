"""Re-linking a provider, or registering a new one, with the device-code login (admins only).

Start gives a user code to enter at the issuer's device page; poll completes the login once it
was approved, stores the new tokens (encrypted) and makes the provider active again. With
``{"register": true}`` the name is a new provider's: the approved account is registered under it
("Sign in with ChatGPT" instead of pasting an auth.json). The pending login lives in the store
(``codexpool_shared.store.device_logins``), so any admin-api replica can complete it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.deps import AdminDep, AuditorDep, HttpDep, KeyringDep, SettingsDep
from codexpool_admin_api.models import ProviderDetail, provider_detail
from codexpool_admin_api.oauth import DeviceFlow
from codexpool_shared.errors import ApiError
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.service import KeysDep, PublisherDep, RedisDep
from codexpool_shared.store import get_provider, register_provider, set_provider_status
from codexpool_shared.store.claims import account_claims
from codexpool_shared.store.device_logins import (
    PendingDeviceLogin,
    end_device_login,
    pending_device_login,
    start_device_login,
)
from codexpool_shared.store.errors import Conflict, NotFound
from codexpool_shared.store.providers import SLUG_PATTERN, validate_name

ProviderName = Annotated[str, Path(min_length=1, max_length=63, pattern=SLUG_PATTERN)]
"""A provider's name in the path: a registration takes it as the new provider's, so the schema
states the registry's rule."""

router = APIRouter(prefix="/api/providers/{name}/oauth", tags=["oauth"], responses=RESPONSES)


class DeviceStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Aliased: pydantic's BaseModel has a ``register`` attribute of its own.
    register_new: StrictBool = Field(default=False, alias="register")
    """Register a new provider under this name once approved (else re-link the existing one)."""


class DeviceLogin(BaseModel):
    provider: str
    user_code: str
    """Enter this code at ``verification_uri`` and sign in to the account."""
    verification_uri: str
    interval_s: int
    """Poll no more often than this."""
    expires_at: datetime


class DevicePoll(BaseModel):
    status: Literal["pending", "linked"]
    provider: ProviderDetail | None
    """The re-linked provider, once ``linked``."""


@router.post("/device", status_code=status.HTTP_201_CREATED)
async def start_provider_device_login(
    name: ProviderName,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    keyring: KeyringDep,
    http: HttpDep,
    settings: SettingsDep,
    audit: AuditorDep,
    body: DeviceStart | None = None,
) -> DeviceLogin:
    """Start re-linking the account (or, with ``register``, signing in a new one under this
    name): returns the code to enter at the issuer's device page."""
    register = body is not None and body.register_new
    if register:
        await _name_is_free(redis, keys, name)
    else:
        await get_provider(redis, keys, name)
    flow = DeviceFlow(http, str(settings.auth_base_url))
    started = await flow.start()
    expires_at = int(time.time()) + started.expires_in_s
    await start_device_login(
        redis,
        keys,
        keyring,
        name,
        PendingDeviceLogin(
            device_auth_id=started.device_auth_id, user_code=started.user_code, register=register
        ),
        expires_in_s=started.expires_in_s,
    )
    login = DeviceLogin(
        provider=name,
        user_code=started.user_code,
        verification_uri=flow.verification_uri,
        interval_s=started.interval_s,
        expires_at=datetime.fromtimestamp(expires_at, UTC),
    )
    await audit.record(
        admin,
        "provider.oauth.start",
        name,
        after={"expires_at": expires_at, "register": register},
    )
    return login


async def _name_is_free(redis: RedisDep, keys: KeysDep, name: str) -> None:
    validate_name(name)
    try:
        await get_provider(redis, keys, name)
    except NotFound:
        return
    raise Conflict("name", f"provider {name!r} already exists: re-link it instead")


@router.post("/device/poll")
async def poll_provider_device_login(
    name: ProviderName,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    keyring: KeyringDep,
    http: HttpDep,
    settings: SettingsDep,
    audit: AuditorDep,
    publisher: PublisherDep,
) -> DevicePoll:
    """Complete the login once the code was approved: store the new tokens, status active (or
    register the new provider)."""
    pending = await pending_device_login(redis, keys, keyring, name)
    if pending is None:
        raise ApiError(
            404,
            f"no device login is pending for {name!r} (or it expired): start a new one",
            code="device_login_not_found",
            param="name",
        )
    if not pending.register:
        before = await get_provider(redis, keys, name)
    flow = DeviceFlow(http, str(settings.auth_base_url))
    tokens = await flow.poll(pending.device_auth_id, pending.user_code)
    if tokens is None:
        return DevicePoll(status="pending", provider=None)
    await end_device_login(redis, keys, name)
    linked = account_claims(tokens.id_token, tokens.access_token).account_id
    document = {
        "tokens": {
            "id_token": tokens.id_token,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "account_id": linked,
        }
    }
    if pending.register:
        # register_provider refuses a name taken since the start (Conflict, a 409).
        provider = provider_detail(await register_provider(redis, keys, keyring, name, document))
        await audit.record(
            admin,
            "provider.register",
            name,
            after={**provider.model_dump(mode="json"), "via": "device_code"},
        )
        return DevicePoll(status="linked", provider=provider)
    if linked != before.account_id:
        raise ApiError(
            409,
            f"the approved login is for another account than provider {name!r}; "
            "register that account as a new provider instead",
            code="account_mismatch",
            param="name",
        )
    await register_provider(redis, keys, keyring, name, document, replace=True)
    previous = await set_provider_status(redis, keys, name, "active")
    if previous is not None and previous != "active":
        publisher.publish(
            ProviderStatusChangedV1(
                provider=name,
                dimension="account",
                previous=previous,
                current="active",
                reason="relinked",
                actor=admin.id,
            )
        )
    after = provider_detail(await get_provider(redis, keys, name))
    await audit.record(
        admin,
        "provider.oauth.relink",
        name,
        before=provider_detail(before).model_dump(mode="json"),
        after=after.model_dump(mode="json"),
    )
    return DevicePoll(status="linked", provider=after)
