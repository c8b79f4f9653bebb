"""The activity table of a pool: health aggregates, live quota and provider status together."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from redis.asyncio import Redis

from codexpool_admin_api.models import ProviderDetail, epoch, provider_detail
from codexpool_shared.activity import TimelinePoint, read_activity
from codexpool_shared.events import HealthBand, ProviderStatus, Strategy
from codexpool_shared.keys import Keys
from codexpool_shared.store import get_provider
from codexpool_shared.store.errors import NotFound
from codexpool_shared.store.leases import in_flight
from codexpool_shared.store.live import LiveState, QuotaWindow, get_live
from codexpool_shared.store.overflow import OVERFLOW, get_overflow
from codexpool_shared.store.pools import Pool


class QuotaOut(BaseModel):
    primary: QuotaWindow | None
    secondary: QuotaWindow | None
    plan_type: str | None
    credits_has_credits: bool | None
    credits_unlimited: bool | None
    credits_balance: str | None
    updated_at: datetime | None


class ProviderRow(BaseModel):
    provider: str
    status: ProviderStatus | Literal["unregistered"]
    """Account status; ``unregistered`` when the provider was deleted but is still listed."""
    requests: int
    successes: int
    failures: int
    failures_by_class: dict[str, int]
    success_rate: float | None
    health_score: float | None
    health_band: HealthBand | None
    health_components: dict[str, Any]
    fallback_count: int
    fallbacks_away: int
    ttfb_p50_ms: float | None
    ttfb_p95_ms: float | None
    timeline: list[TimelinePoint]
    timeline_hourly: list[TimelinePoint]
    quota: QuotaOut | None
    cooldown_until: datetime | None
    cooldown_reason: str | None
    circuit: Literal["closed", "open"]
    circuit_open_until: datetime | None
    refresh_error: str | None = None
    """Why Refresh Live State could not read this provider's quota just now."""
    in_flight: int = 0
    """Requests in flight to it across every router replica (its unexpired leases; counted
    only while it has ``max_concurrent``)."""
    max_concurrent: int | None = None
    oauth: ProviderDetail | None = None
    """OAuth link details (account, email, plan, token expiry, last refresh); admins only."""


class OverflowRow(BaseModel):
    """The pool's overflow endpoint, counted apart from the members (it is none of them)."""

    base_url: str | None
    """Where it sends requests now; null when the pool has none (its counts may remain)."""
    requests: int
    successes: int
    failures: int
    timeline: list[TimelinePoint]


class ActivityOut(BaseModel):
    agent_id: str
    strategy: Strategy
    version: int
    providers: list[ProviderRow]
    overflow: OverflowRow | None = None
    """Requests the overflow took for this pool; null when it has none and never had."""


def _quota(live: LiveState) -> QuotaOut | None:
    q = live.quota
    if q is None:
        return None
    return QuotaOut(
        primary=q.primary,
        secondary=q.secondary,
        plan_type=q.plan_type,
        credits_has_credits=q.credits_has_credits,
        credits_unlimited=q.credits_unlimited,
        credits_balance=q.credits_balance,
        updated_at=epoch(q.observed_at_ms / 1000),
    )


def _ms(value: int, now_ms: int) -> datetime | None:
    return epoch(value / 1000) if value > now_ms else None


async def pool_activity(
    redis: Redis,
    keys: Keys,
    pool: Pool,
    *,
    admin: bool,
    refresh_errors: dict[str, str] | None = None,
) -> ActivityOut:
    """The activity of ``pool``'s members, in pool order; OAuth details only for ``admin``."""
    now_ms = int(time.time() * 1000)
    rows: list[ProviderRow] = []
    activities = await read_activity(redis, keys, pool.providers, scope=pool.agent_id)
    for activity in activities:
        name = activity.provider
        live = await get_live(redis, keys, name)
        try:
            provider = await get_provider(redis, keys, name)
        except NotFound:
            provider = None
        rows.append(
            ProviderRow(
                **activity.model_dump(
                    include={
                        "provider",
                        "requests",
                        "successes",
                        "failures",
                        "failures_by_class",
                        "success_rate",
                        "health_score",
                        "health_band",
                        "health_components",
                        "fallback_count",
                        "fallbacks_away",
                        "ttfb_p50_ms",
                        "ttfb_p95_ms",
                        "timeline",
                        "timeline_hourly",
                    }
                ),  # fmt: skip
                status=provider.status if provider else "unregistered",
                quota=_quota(live),
                cooldown_until=_ms(live.cooldown_until_ms, now_ms),
                cooldown_reason=live.cooldown_reason if live.cooldown_until_ms > now_ms else None,
                circuit="open" if live.circuit_open_until_ms > now_ms else "closed",
                circuit_open_until=_ms(live.circuit_open_until_ms, now_ms),
                refresh_error=(refresh_errors or {}).get(name),
                in_flight=(
                    await in_flight(redis, keys, name, now_ms)
                    if provider and provider.max_concurrent
                    else 0
                ),
                max_concurrent=provider.max_concurrent if provider else None,
                oauth=provider_detail(provider) if admin and provider else None,
            )
        )
    return ActivityOut(
        agent_id=pool.agent_id,
        strategy=pool.strategy,
        version=pool.version,
        providers=rows,
        overflow=await _overflow(redis, keys, pool.agent_id),
    )


async def _overflow(redis: Redis, keys: Keys, agent_id: str) -> OverflowRow | None:
    """The overflow's counts in this pool.

    The health service keeps its attempts under the provider name ``overflow``, as the router
    records them.
    """
    shown = await get_overflow(redis, keys, agent_id)
    [counts] = await read_activity(redis, keys, [OVERFLOW], scope=agent_id)
    if shown is None and not counts.requests:
        return None
    return OverflowRow(
        base_url=shown.base_url if shown else None,
        requests=counts.requests,
        successes=counts.successes,
        failures=counts.failures,
        timeline=counts.timeline,
    )
