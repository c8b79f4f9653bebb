"""The health aggregates' Redis layout and their read side: a pool's activity table.

``codexpool-health`` writes the aggregates (see its README for the score formula); the admin API
serves them (``GET /api/agents/{id}/codex-pool/activity``) through :func:`read_activity`. The
layout constants live here so that the writer and the readers cannot drift apart.

Per provider and scope (an agent id, or :data:`ALL_POOLS` across every pool):

- ``Keys.health_totals``: lifetime counters, the fields of :class:`Fields` plus one
  ``outcome:<class>`` count per outcome class, and ``last_fault_at`` (epoch seconds).
- ``Keys.health_minute``: the same counters for one minute of ``occurred_at``, plus the latency
  histograms ``ttfb:<i>`` and ``dur:<i>`` (bucket ``i`` of :data:`LATENCY_BOUNDS_MS`); they
  expire :data:`MINUTE_RETENTION_S` after the minute starts.
- ``Keys.health_hour``: the timeline counters for one hour, plus the tokens of the requests
  the provider answered (``input_tokens``, ``output_tokens``); they expire after
  :data:`HOUR_RETENTION_S`, so they also make the 28-day usage history.
- ``Keys.live(provider)`` (scope-free), beside the router's live state: the fields of
  :class:`HealthFields`, ``score``, ``band``, ``components`` (JSON), ``updated_at`` and
  ``last_fault_at``; the router's selection script reads the score with the live state, in the
  same command, to open circuits.

The health service's apply script and the selection script are rendered from these classes
(``codexpool_shared.store.scripts``): neither spells a field name itself.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, cast

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from codexpool_shared.events import HealthBand
from codexpool_shared.keys import Keys
from codexpool_shared.store.replies import decode_hash

ALL_POOLS: Final = "@all"
"""The scope that counts every pool together ('@' is not a slug character: no agent has it)."""

LATENCY_BOUNDS_MS: Final[tuple[float, ...]] = (
    50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 3000.0, 5000.0, 10000.0, 20000.0, 30000.0, 60000.0,
)  # fmt: skip
"""Upper bounds of the latency histogram buckets; one more bucket counts everything above."""

MINUTE_RETENTION_S: Final = 2 * 3600
"""How long a minute bucket lives after its minute starts (the timeline shows 60 minutes)."""

USAGE_HISTORY_HOURS: Final = 28 * 24
"""Hour buckets in the usage history (``codexpool_shared.usage_history``): 28 days."""

HOUR_RETENTION_S: Final = (USAGE_HISTORY_HOURS + 2) * 3600
"""How long an hour bucket lives after its hour starts: the usage history's 28 days (the hourly
timeline shows the last 24 of them). At most 676 small hashes per provider and scope."""

TIMELINE_MINUTES: Final = 60
"""Minute buckets in the timeline, the current minute last."""

TIMELINE_HOURS: Final = 24
"""Hour buckets in the hourly timeline, the current hour last."""

HEALTHY_MIN: Final = 80.0
"""A score at or above this is ``healthy``."""

DEGRADED_MIN: Final = 50.0
"""A score at or above this (below :data:`HEALTHY_MIN`) is ``degraded``; under it, ``unhealthy``."""


class Fields:
    """Counter field names shared by the totals, minute and hour hashes."""

    REQUESTS: Final = "requests"
    SUCCESSES: Final = "successes"
    FAILURES: Final = "failures"
    FAULTS: Final = "faults"
    FALLBACKS: Final = "fallbacks"
    FALLBACKS_AWAY: Final = "fallbacks_away"
    LAST_FAULT_AT: Final = "last_fault_at"
    OUTCOME_PREFIX: Final = "outcome:"
    TTFB_PREFIX: Final = "ttfb:"
    DURATION_PREFIX: Final = "dur:"
    INPUT_TOKENS: Final = "input_tokens"
    """Hour buckets only: input tokens of the requests this provider answered."""
    OUTPUT_TOKENS: Final = "output_tokens"
    """Hour buckets only: output tokens of the requests this provider answered."""


class HealthFields:
    """Field names of a provider's health verdict, in its live hash (``Keys.live``)."""

    SCORE: Final = "score"
    BAND: Final = "band"
    COMPONENTS: Final = "components"
    UPDATED_AT: Final = "updated_at"
    LAST_FAULT_AT: Final = Fields.LAST_FAULT_AT
    """Copied from the totals (across pools) when the score is computed."""


HEALTH_VERDICT: Final = tuple(value for name, value in vars(HealthFields).items() if name.isupper())
"""Every field of :class:`HealthFields`, which the health service writes into a live hash (a
rebuild deletes them)."""


def score_opens_circuit(
    score: float | None,
    last_fault_at: float | None,
    closed_at: float | None,
    threshold: float = DEGRADED_MIN,
) -> bool:
    """Whether a provider's stored score should open its circuit (the router's side).

    The score lags: it covers a sliding window, so right after a successful probe it still shows
    the faults that opened the circuit. A score only opens the circuit when it is below
    ``threshold`` *and* a fault happened after the circuit last closed (``closed_at``).
    """
    if score is None or score >= threshold:
        return False
    return closed_at is None or (last_fault_at is not None and last_fault_at > closed_at)


def latency_bucket(ms: float) -> int:
    """Index of the histogram bucket a latency falls in."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)


def quantile(q: float, counts: Sequence[int]) -> float | None:
    """The ``q`` quantile of a histogram, interpolated linearly inside its bucket.

    Same rule as Prometheus' ``histogram_quantile``: the first bucket starts at 0 and a rank in
    the overflow bucket answers the last finite bound. ``None`` for an empty histogram.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if i >= len(LATENCY_BOUNDS_MS):
                return LATENCY_BOUNDS_MS[-1]
            low = LATENCY_BOUNDS_MS[i - 1] if i > 0 else 0.0
            return low + (LATENCY_BOUNDS_MS[i] - low) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS_MS[-1]


class TimelinePoint(BaseModel):
    """One bucket of the activity timeline."""

    model_config = ConfigDict(frozen=True)

    t: datetime
    """Start of the bucket (UTC)."""
    requests: int
    """Attempts on the provider."""
    successes: int
    """Attempts that succeeded."""
    failures: int
    """Attempts that did not succeed, for any reason (quota included)."""
    fallbacks: int
    """Attempts that came to the provider as a fallback from a failed one."""


class ProviderActivity(BaseModel):
    """One row of a pool's activity table."""

    model_config = ConfigDict(frozen=True)

    provider: str
    """Provider name."""
    requests: int
    """Attempts on the provider (lifetime, in the scope)."""
    successes: int
    """Attempts that succeeded."""
    failures: int
    """Attempts that did not succeed, for any reason."""
    failures_by_class: dict[str, int]
    """Non-success attempts by outcome class (``usage_limit`` is quota, not a fault)."""
    success_rate: float | None
    """Successes over attempts that reached a verdict (0-1); ``None`` before any verdict."""
    fallback_count: int
    """Times the pool switched to this provider because another attempt failed."""
    fallbacks_away: int
    """Times a health fault on this provider made the pool switch to another one."""
    ttfb_p50_ms: float | None
    """Median time to first byte over the timeline window."""
    ttfb_p95_ms: float | None
    """95th percentile time to first byte over the timeline window."""
    duration_p50_ms: float | None
    """Median attempt duration over the timeline window."""
    duration_p95_ms: float | None
    """95th percentile attempt duration over the timeline window."""
    health_score: float | None
    """Health score 0-100 (across pools); ``None`` before the first outcome."""
    health_band: HealthBand | None
    """``healthy``, ``degraded`` or ``unhealthy``."""
    health_components: dict[str, Any]
    """What the score is made of (success rate, latency, fallbacks away, samples, prior)."""
    health_updated_at: float | None
    """When the score was computed (epoch seconds)."""
    timeline: list[TimelinePoint]
    """The last 60 minutes, one point per minute, oldest first, zeros included."""
    timeline_hourly: list[TimelinePoint]
    """The last 24 hours, one point per hour, oldest first, zeros included."""


def _int(fields: dict[str, str], name: str) -> int:
    return int(fields.get(name, 0))


def _float(fields: dict[str, str], name: str) -> float | None:
    value = fields.get(name)
    return float(value) if value not in (None, "") else None


def _point(start: int, fields: dict[str, str]) -> TimelinePoint:
    return TimelinePoint(
        t=datetime.fromtimestamp(start, UTC),
        requests=_int(fields, Fields.REQUESTS),
        successes=_int(fields, Fields.SUCCESSES),
        failures=_int(fields, Fields.FAILURES),
        fallbacks=_int(fields, Fields.FALLBACKS),
    )


def _histogram(buckets: Sequence[dict[str, str]], prefix: str) -> list[int]:
    return [
        sum(_int(b, f"{prefix}{i}") for b in buckets) for i in range(len(LATENCY_BOUNDS_MS) + 1)
    ]


def _activity(
    provider: str,
    totals: dict[str, str],
    minutes: list[tuple[int, dict[str, str]]],
    hours: list[tuple[int, dict[str, str]]],
    health: dict[str, str],
) -> ProviderActivity:
    successes = _int(totals, Fields.SUCCESSES)
    verdicts = successes + _int(totals, Fields.FAULTS)
    ttfb = _histogram([m for _, m in minutes], Fields.TTFB_PREFIX)
    duration = _histogram([m for _, m in minutes], Fields.DURATION_PREFIX)
    band = health.get(HealthFields.BAND)
    return ProviderActivity(
        provider=provider,
        requests=_int(totals, Fields.REQUESTS),
        successes=successes,
        failures=_int(totals, Fields.FAILURES),
        failures_by_class={
            name.removeprefix(Fields.OUTCOME_PREFIX): int(value)
            for name, value in sorted(totals.items())
            if name.startswith(Fields.OUTCOME_PREFIX) and name != "outcome:success"
        },
        success_rate=successes / verdicts if verdicts else None,
        fallback_count=_int(totals, Fields.FALLBACKS),
        fallbacks_away=_int(totals, Fields.FALLBACKS_AWAY),
        ttfb_p50_ms=quantile(0.5, ttfb),
        ttfb_p95_ms=quantile(0.95, ttfb),
        duration_p50_ms=quantile(0.5, duration),
        duration_p95_ms=quantile(0.95, duration),
        health_score=_float(health, HealthFields.SCORE),
        health_band=cast(HealthBand, band) if band else None,
        health_components=json.loads(health.get(HealthFields.COMPONENTS, "{}")),
        health_updated_at=_float(health, HealthFields.UPDATED_AT),
        timeline=[_point(start, fields) for start, fields in minutes],
        timeline_hourly=[_point(start, fields) for start, fields in hours],
    )


async def read_activity(
    redis: Redis,
    keys: Keys,
    providers: Sequence[str],
    *,
    scope: str = ALL_POOLS,
    now: float | None = None,
) -> list[ProviderActivity]:
    """The activity of each provider in ``scope``, in the order given, in one Redis round trip.

    Args:
        redis: Any client of the one Redis (``decode_responses`` either way).
        keys: The namespace's keys.
        providers: Provider names, usually the pool's members in pool order.
        scope: An agent id for the counters within that agent's pool, or :data:`ALL_POOLS`.
            The health score is per provider whatever the scope.
        now: Epoch seconds of the newest timeline bucket (tests pin it); defaults to the clock.

    Returns:
        One :class:`ProviderActivity` per provider; unknown providers come back as zeros.
    """
    clock = time.time() if now is None else now
    minute = int(clock // 60) * 60
    hour = int(clock // 3600) * 3600
    minute_starts = [minute - 60 * i for i in reversed(range(TIMELINE_MINUTES))]
    hour_starts = [hour - 3600 * i for i in reversed(range(TIMELINE_HOURS))]
    async with redis.pipeline(transaction=False) as pipe:
        for provider in providers:
            pipe.hgetall(keys.health_totals(scope, provider))
            for start in minute_starts:
                pipe.hgetall(keys.health_minute(scope, provider, start))
            for start in hour_starts:
                pipe.hgetall(keys.health_hour(scope, provider, start))
            pipe.hgetall(keys.live(provider))
        replies = iter([decode_hash(r) for r in await pipe.execute()])
    return [
        _activity(
            provider,
            next(replies),
            [(start, next(replies)) for start in minute_starts],
            [(start, next(replies)) for start in hour_starts],
            next(replies),
        )
        for provider in providers
    ]
