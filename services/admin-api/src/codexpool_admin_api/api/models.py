"""Response and request shapes shared by several routes. No model here carries a token."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from codexpool_shared.events import ProviderStatus
from codexpool_shared.store import Provider


def epoch(value: int | float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class ProviderOut(BaseModel):
    """A provider as a viewer sees it."""

    name: str
    status: ProviderStatus
    plan_type: str | None
    created_at: datetime | None


class ProviderDetail(ProviderOut):
    """A provider with its OAuth link details, for admins."""

    account_id: str
    email: str | None
    access_expires_at: datetime | None
    """When the stored access token expires (it is refreshed before that)."""
    last_refresh: datetime | None
    credential_version: int


def provider_out(provider: Provider, *, admin: bool) -> ProviderDetail | ProviderOut:
    if admin:
        return provider_detail(provider)
    return ProviderOut(
        name=provider.name,
        status=provider.status,
        plan_type=provider.plan_type,
        created_at=epoch(provider.created_at or None),
    )


def provider_detail(provider: Provider) -> ProviderDetail:
    return ProviderDetail(
        name=provider.name,
        status=provider.status,
        plan_type=provider.plan_type,
        created_at=epoch(provider.created_at or None),
        account_id=provider.account_id,
        email=provider.email,
        access_expires_at=epoch(provider.access_expires_at),
        last_refresh=epoch(provider.last_refresh),
        credential_version=provider.credential_version,
    )
