"""The provider registry: register from a Codex auth.json (or its tokens), read, enable/disable,
delete. Tokens go in, encrypted by the store; they never come out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from codexpool_admin_api.api.errors import RESPONSES
from codexpool_admin_api.audit import Auditor
from codexpool_admin_api.auth import Principal
from codexpool_admin_api.deps import AdminDep, AuditorDep, KeyringDep, ViewerDep
from codexpool_admin_api.models import (
    ProviderDetail,
    ProviderOut,
    provider_detail,
    provider_out,
)
from codexpool_admin_api.pool_events import pool_changed
from codexpool_shared.activity import USAGE_HISTORY_HOURS
from codexpool_shared.errors import ApiError
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.service import KeysDep, PublisherDep, RedisDep
from codexpool_shared.store import (
    InvalidField,
    ProviderInUse,
    delete_provider,
    get_provider,
    list_providers,
    register_provider,
    set_provider_status,
)
from codexpool_shared.store.egress import set_proxy
from codexpool_shared.store.leases import set_max_concurrent
from codexpool_shared.store.providers import HEADER_SAFE_TEXT, SLUG_PATTERN, Provider
from codexpool_shared.usage_history import UsageHistory, read_usage_history

router = APIRouter(prefix="/api/providers", tags=["providers"], responses=RESPONSES)


class TokensIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id_token: SecretStr | None = Field(default=None, min_length=1)
    access_token: SecretStr = Field(min_length=1)
    refresh_token: SecretStr = Field(min_length=1)
    account_id: str | None = Field(default=None, max_length=200, pattern=HEADER_SAFE_TEXT)


class ProviderCreate(BaseModel):
    """Either ``auth_json`` (a Codex auth.json document) or ``tokens``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63, pattern=SLUG_PATTERN)
    auth_json: dict[str, Any] | None = None
    tokens: TokensIn | None = None

    def document(self) -> dict[str, Any]:
        if (self.auth_json is None) == (self.tokens is None):
            raise InvalidField("auth_json", "give exactly one of auth_json and tokens")
        if self.auth_json is not None:
            return self.auth_json
        assert self.tokens is not None
        return {
            "tokens": {
                "id_token": self.tokens.id_token.get_secret_value()
                if self.tokens.id_token
                else None,
                "access_token": self.tokens.access_token.get_secret_value(),
                "refresh_token": self.tokens.refresh_token.get_secret_value(),
                "account_id": self.tokens.account_id,
            }
        }


class ProviderPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "disabled"] | None = None
    """``needs_reauth`` is set by the system; leave it by re-linking the account."""
    proxy_url: SecretStr | None = None
    """Egress proxy (``http://``, ``https://``, ``socks5://`` or ``socks5h://``, credentials
    allowed: stored encrypted, never shown back); ``null`` removes it. Absent: unchanged."""
    max_concurrent: int | None = Field(default=None, ge=1, le=10_000)
    """Most requests in flight to it across every router replica (leases); ``null`` removes
    the cap. Absent: unchanged."""


class ProviderList(BaseModel):
    data: list[ProviderDetail | ProviderOut]


@router.get("")
async def list_registered_providers(
    principal: ViewerDep, redis: RedisDep, keys: KeysDep
) -> ProviderList:
    """Every registered provider; admins also see the OAuth link details."""
    admin = principal.role == "admin"
    return ProviderList(
        data=[provider_out(p, admin=admin) for p in await list_providers(redis, keys)]
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def register_new_provider(
    body: ProviderCreate,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    keyring: KeyringDep,
    audit: AuditorDep,
) -> ProviderDetail:
    """Register a ChatGPT account; account id, email and plan come from its id_token."""
    try:
        provider = await register_provider(redis, keys, keyring, body.name, body.document())
    except InvalidField as exc:
        if body.tokens is not None and exc.field.startswith("auth_json."):
            raise InvalidField(exc.field.removeprefix("auth_json."), exc.message) from None
        raise
    out = provider_detail(provider)
    await audit.record(admin, "provider.register", provider.name, after=out.model_dump(mode="json"))
    return out


@router.get("/{name}")
async def get_registered_provider(
    name: str, principal: ViewerDep, redis: RedisDep, keys: KeysDep
) -> ProviderDetail | ProviderOut:
    """One provider; admins also see the OAuth link details."""
    return provider_out(await get_provider(redis, keys, name), admin=principal.role == "admin")


@router.get("/{name}/usage-history")
async def get_provider_usage_history(
    name: str,
    _: ViewerDep,
    redis: RedisDep,
    keys: KeysDep,
    hours: Annotated[int, Query(ge=1, le=USAGE_HISTORY_HOURS)] = USAGE_HISTORY_HOURS,
) -> UsageHistory:
    """Requests and tokens of one provider across every pool, one point per hour, oldest first,
    up to 28 days (computed by the health service from the outcome events)."""
    await get_provider(redis, keys, name)
    return await read_usage_history(redis, keys, [name], hours=hours)


@router.patch("/{name}")
async def update_provider_status(
    name: str,
    body: ProviderPatch,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    audit: AuditorDep,
    publisher: PublisherDep,
    keyring: KeyringDep,
) -> ProviderDetail:
    """Enable or disable a provider (a disabled provider gets no requests), and set or remove
    its egress proxy (every router request for it, token refreshes too, goes through it)."""
    before = await get_provider(redis, keys, name)
    if "proxy_url" in body.model_fields_set:
        url = body.proxy_url.get_secret_value() if body.proxy_url is not None else None
        await set_proxy(redis, keys, keyring, name, url)
    if "max_concurrent" in body.model_fields_set:
        await set_max_concurrent(redis, keys, name, body.max_concurrent)
    if body.status is None:
        return await _audited(admin, audit, before, await get_provider(redis, keys, name))
    if before.status == "needs_reauth" and body.status == "active":
        raise ApiError(
            409,
            f"provider {name!r} needs re-linking: start POST /api/providers/{name}/oauth/device",
            code="needs_reauth",
            param="status",
        )
    previous = await set_provider_status(redis, keys, name, body.status)
    after = await get_provider(redis, keys, name)
    if previous != body.status:
        publisher.publish(
            ProviderStatusChangedV1(
                provider=name,
                dimension="account",
                previous=previous,
                current=body.status,
                reason="admin",
                actor=admin.id,
            )
        )
    return await _audited(admin, audit, before, after)


async def _audited(
    admin: Principal, audit: Auditor, before: Provider, after: Provider
) -> ProviderDetail:
    out = provider_detail(after)
    await audit.record(
        admin,
        "provider.update",
        after.name,
        before=provider_detail(before).model_dump(mode="json"),
        after=out.model_dump(mode="json"),
    )
    return out


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_registered_provider(
    name: str,
    admin: AdminDep,
    redis: RedisDep,
    keys: KeysDep,
    audit: AuditorDep,
    publisher: PublisherDep,
    force: Annotated[bool, Query(description="Also remove it from every pool")] = False,
) -> None:
    """Delete a provider; refused with 409 naming the pools that use it, unless ``force=true``,
    which removes it from each of them and deletes it in one atomic step."""
    try:
        deleted = await delete_provider(redis, keys, name, force=force)
    except ProviderInUse as exc:
        agents = ", ".join(exc.agent_ids)
        raise ApiError(
            409,
            f"provider {name!r} is in the pools of: {agents}; remove it from them first "
            "or delete with force=true",
            code="provider_in_use",
            param="name",
        ) from None
    for change in deleted.pools:
        await pool_changed(admin, audit, publisher, "member_removed", change.before, change.after)
    await audit.record(
        admin,
        "provider.delete",
        name,
        before=provider_detail(deleted.provider).model_dump(mode="json"),
    )
