"""What the API answers about providers and pools, shared by routes and domain modules (the
activity table, pool events). No model here carries a token."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from codexpool_shared.events import ProviderStatus, Strategy
from codexpool_shared.store import Pool, Provider
from codexpool_shared.store.overflow import OverflowShown
from codexpool_shared.store.pools import Priority


def epoch(value: int | float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class ProviderOut(BaseModel):
    """A provider as a viewer sees it."""

    name: str
    status: ProviderStatus
    plan_type: str | None
    created_at: datetime | None
    max_concurrent: int | None = None
    """Most requests in flight to it across every router replica; null: no cap."""


class ProviderDetail(ProviderOut):
    """A provider with its OAuth link details, for admins."""

    account_id: str
    email: str | None
    access_expires_at: datetime | None
    """When the stored access token expires (it is refreshed before that)."""
    last_refresh: datetime | None
    credential_version: int
    proxy: str | None = None
    """Its egress proxy as scheme://host:port (credentials never shown), or null: direct."""


def provider_out(provider: Provider, *, admin: bool) -> ProviderDetail | ProviderOut:
    if admin:
        return provider_detail(provider)
    return ProviderOut(
        name=provider.name,
        status=provider.status,
        plan_type=provider.plan_type,
        created_at=epoch(provider.created_at or None),
        max_concurrent=provider.max_concurrent,
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
        max_concurrent=provider.max_concurrent,
        proxy=provider.proxy,
    )


class PoolOut(BaseModel):
    agent_id: str
    strategy: Strategy
    providers: list[str]
    """Members in order; the first is the primary."""
    version: int
    """Incremented by every change."""
    priorities: dict[str, Priority] = {}
    """Members whose priority is not ``normal``."""
    prefer_earliest_reset: bool = False
    overflow: OverflowShown | None = None
    """The opt-in overflow endpoint (its key is never shown), or null: none."""


def pool_out(pool: Pool) -> PoolOut:
    return PoolOut(
        agent_id=pool.agent_id,
        strategy=pool.strategy,
        providers=list(pool.providers),
        version=pool.version,
        priorities=dict(pool.priorities),
        prefer_earliest_reset=pool.prefer_earliest_reset,
    )
