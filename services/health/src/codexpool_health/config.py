from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from codexpool_shared.config import InfraSettings


class Settings(InfraSettings):
    """codexpool-health settings: the shared infrastructure plus ``HEALTH_*`` knobs."""

    model_config = SettingsConfigDict(
        extra="ignore", env_ignore_empty=True, frozen=True, populate_by_name=True
    )

    consume: bool = Field(default=True, validation_alias="HEALTH_CONSUME")
    """Consume outcome events (off: only serve probes and rescore, e.g. while rebuilding)."""

    prefetch: int = Field(default=200, validation_alias="HEALTH_PREFETCH", ge=100, le=300)
    """Unacked deliveries RabbitMQ may hand this process; also the most events in flight."""

    batch_size: int = Field(default=100, validation_alias="HEALTH_BATCH_SIZE", ge=1, le=500)
    """Most events applied by one Lua script call."""

    batch_linger_ms: float = Field(default=2.0, validation_alias="HEALTH_BATCH_LINGER_MS", ge=0)
    """How long a partial batch waits for more events before it is applied."""

    batch_max_linger_ms: float = Field(
        default=50.0, validation_alias="HEALTH_BATCH_MAX_LINGER_MS", ge=0
    )
    """A partial batch waits ``HEALTH_BATCH_LINGER_MS`` again while events arrive fast enough
    to fill it within this long in all (a backlog), so that it is applied in full batches."""

    dedupe_ttl_s: int = Field(default=86_400, validation_alias="HEALTH_DEDUPE_TTL_S", ge=60)
    """How long an applied ``event_id`` is remembered; a redelivery within it counts once."""

    outcome_log_maxlen: int = Field(
        default=100_000, validation_alias="HEALTH_OUTCOME_LOG_MAXLEN", ge=0
    )
    """Approximate length of the replayable outcome log stream; 0 keeps no log."""

    explain_ttl_s: int = Field(default=86_400, validation_alias="HEALTH_EXPLAIN_TTL_S", ge=0)
    """How long each request's outcome (its routing explanation) can be looked up by request
    id; 0 keeps none. Memory: about 1-2 KB per request times the requests of this window."""

    recent_requests: int = Field(
        default=200, validation_alias="HEALTH_RECENT_REQUESTS", ge=0, le=10_000
    )
    """Latest request ids kept per agent for the pool page's list."""

    forecast_interval_s: float = Field(
        default=10.0, validation_alias="HEALTH_FORECAST_INTERVAL_S", gt=0
    )
    """How often quota snapshots are sampled into their history and the runways forecast."""

    quota_history_maxlen: int = Field(
        default=2000, validation_alias="HEALTH_QUOTA_HISTORY_MAXLEN", ge=10, le=100_000
    )
    """Approximate samples kept per provider (the forecast reads the last hour of them)."""

    max_future_s: float = Field(default=300.0, validation_alias="HEALTH_MAX_FUTURE_S", ge=0)
    """An outcome whose ``occurred_at`` is further ahead of this clock is dead-lettered."""

    max_event_age_s: float = Field(
        default=86_400.0, validation_alias="HEALTH_MAX_EVENT_AGE_S", gt=0
    )
    """An outcome older than this (the hourly timeline's 24 hours) is dead-lettered."""

    rescore_interval_s: float = Field(
        default=10.0, validation_alias="HEALTH_RESCORE_INTERVAL_S", gt=0
    )
    """How often every known provider is rescored, so that old faults age out without traffic."""

    score_refresh_s: float = Field(default=1.0, validation_alias="HEALTH_SCORE_REFRESH_S", ge=0)
    """A batch with no health fault on a provider rescores it only once its score is this old
    (0: after every batch); a fault rescores it at once."""

    redis_retry_max_s: float = Field(default=5.0, validation_alias="HEALTH_REDIS_RETRY_MAX_S", gt=0)
    """Largest pause between attempts at applying a batch while Redis is unavailable."""

    score_window_minutes: int = Field(
        default=5, validation_alias="HEALTH_SCORE_WINDOW_MINUTES", ge=1, le=60
    )
    """Minute buckets (the current one included) the health score is computed over."""

    prior_weight: float = Field(default=10.0, validation_alias="HEALTH_PRIOR_WEIGHT", gt=0)
    """Pseudo-samples of the neutral prior: how many outcomes it takes to move the score."""

    prior_mean: float = Field(default=0.95, validation_alias="HEALTH_PRIOR_MEAN", gt=0, le=1)
    """Success rate the prior assumes for a provider with no recent outcomes."""

    latency_target_ms: float = Field(
        default=2000.0, validation_alias="HEALTH_LATENCY_TARGET_MS", gt=0
    )
    """A TTFB p95 at or under this costs the score nothing."""

    latency_limit_ms: float = Field(
        default=10_000.0, validation_alias="HEALTH_LATENCY_LIMIT_MS", gt=0
    )
    """A TTFB p95 at or over this costs the full latency penalty."""

    latency_max_penalty: float = Field(
        default=0.5, validation_alias="HEALTH_LATENCY_MAX_PENALTY", ge=0, le=1
    )
    """The largest share of the score latency alone can take away."""

    fallback_penalty: float = Field(
        default=0.5, validation_alias="HEALTH_FALLBACK_PENALTY", ge=0, le=1
    )
    """Score share taken away per unit of fallbacks-away rate."""

    @model_validator(mode="after")
    def _latency_limit_above_target(self) -> Self:
        if self.latency_limit_ms <= self.latency_target_ms:
            raise ValueError("HEALTH_LATENCY_LIMIT_MS must be above HEALTH_LATENCY_TARGET_MS")
        return self
