"""Usage history: requests and tokens per provider and hour over 28 days, per agent or fleet-wide.

Read from the health service's hour buckets (``Keys.health_hour``, written from the outcome
events by ``codexpool-health``; layout in ``codexpool_shared.activity``), which live
:data:`~codexpool_shared.activity.HOUR_RETENTION_S`: the history costs no key of its own and
its memory is bounded by (providers x scopes x 676) small hashes. ``requests`` counts the
attempts a provider received (failed ones included, as the upstream counts them); tokens are
those of the requests it answered, as ``response.completed`` reported them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from codexpool_shared.activity import ALL_POOLS, USAGE_HISTORY_HOURS, Fields
from codexpool_shared.keys import Keys
from codexpool_shared.store.replies import decode_hash


class UsagePoint(BaseModel):
    """One hour of usage."""

    model_config = ConfigDict(frozen=True)

    t: datetime
    """Start of the hour (UTC)."""
    requests: int
    """Attempts the provider(s) received in the hour."""
    successes: int
    """Of those, the ones that succeeded."""
    failures: int
    """Of those, the ones that did not (quota, client errors and faults alike)."""
    input_tokens: int
    """Input tokens of the requests answered in the hour."""
    output_tokens: int
    """Output tokens of the requests answered in the hour."""


class ProviderUsage(BaseModel):
    """One provider's hours, oldest first, zeros included, and their sums."""

    model_config = ConfigDict(frozen=True)

    provider: str
    requests: int
    input_tokens: int
    output_tokens: int
    points: list[UsagePoint]


class UsageHistory(BaseModel):
    """Per provider and summed over them, one point per hour, the current hour last."""

    model_config = ConfigDict(frozen=True)

    scope: str
    """An agent id, or ``@all`` for every pool together."""
    hours: int
    requests: int
    input_tokens: int
    output_tokens: int
    total: list[UsagePoint]
    """The providers' points added up, hour by hour."""
    providers: list[ProviderUsage]


def _point(start: int, fields: dict[str, str]) -> UsagePoint:
    return UsagePoint(
        t=datetime.fromtimestamp(start, UTC),
        requests=int(fields.get(Fields.REQUESTS, 0)),
        successes=int(fields.get(Fields.SUCCESSES, 0)),
        failures=int(fields.get(Fields.FAILURES, 0)),
        input_tokens=int(fields.get(Fields.INPUT_TOKENS, 0)),
        output_tokens=int(fields.get(Fields.OUTPUT_TOKENS, 0)),
    )


def _summed(points: Sequence[UsagePoint], t: datetime) -> UsagePoint:
    return UsagePoint(
        t=t,
        requests=sum(p.requests for p in points),
        successes=sum(p.successes for p in points),
        failures=sum(p.failures for p in points),
        input_tokens=sum(p.input_tokens for p in points),
        output_tokens=sum(p.output_tokens for p in points),
    )


def _provider(name: str, points: list[UsagePoint]) -> ProviderUsage:
    return ProviderUsage(
        provider=name,
        requests=sum(p.requests for p in points),
        input_tokens=sum(p.input_tokens for p in points),
        output_tokens=sum(p.output_tokens for p in points),
        points=points,
    )


async def read_usage_history(
    redis: Redis,
    keys: Keys,
    providers: Sequence[str],
    *,
    scope: str = ALL_POOLS,
    hours: int = USAGE_HISTORY_HOURS,
    now: float | None = None,
) -> UsageHistory:
    """The last ``hours`` hours (at most 28 days) of ``providers`` in ``scope``, in one round trip.

    Args:
        redis: Any client of the one Redis (``decode_responses`` either way).
        keys: The namespace's keys.
        providers: Provider names; unknown ones come back as zeros.
        scope: An agent id for that agent's requests, or ``ALL_POOLS`` for every pool.
        hours: How many hour buckets, 1 to 672.
        now: Epoch seconds within the newest hour (tests pin it); defaults to the clock.
    """
    hours = max(1, min(hours, USAGE_HISTORY_HOURS))
    clock = time.time() if now is None else now
    hour = int(clock // 3600) * 3600
    starts = [hour - 3600 * i for i in reversed(range(hours))]
    async with redis.pipeline(transaction=False) as pipe:
        for provider in providers:
            for start in starts:
                pipe.hgetall(keys.health_hour(scope, provider, start))
        replies = iter([decode_hash(r) for r in await pipe.execute()])
    per_provider = [
        _provider(name, [_point(start, next(replies)) for start in starts]) for name in providers
    ]
    total = [
        _summed([p.points[i] for p in per_provider], datetime.fromtimestamp(start, UTC))
        for i, start in enumerate(starts)
    ]
    return UsageHistory(
        scope=scope,
        hours=hours,
        requests=sum(p.requests for p in per_provider),
        input_tokens=sum(p.input_tokens for p in per_provider),
        output_tokens=sum(p.output_tokens for p in per_provider),
        total=total,
        providers=per_provider,
    )
