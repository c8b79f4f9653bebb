from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RESULTS = ("applied", "duplicate", "malformed", "rejected", "ignored")

REJECT_REASONS = ("malformed", "unknown_field", "future", "stale", "bad_name")
"""Why a delivery was dead-lettered (``codexpool_health_events_rejected_total``)."""

LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class HealthMetrics:
    """The health service's metrics, on the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        processed = Counter(
            "codexpool_health_events_processed_total",
            "Outcome deliveries handled by the health service, by result",
            ["result"],
            registry=registry,
        )
        # Bound children: every result is exported from the start, at zero.
        self.processed = {result: processed.labels(result) for result in RESULTS}
        rejected = Counter(
            "codexpool_health_events_rejected_total",
            "Deliveries dead-lettered by the health service, by reason (malformed and "
            "unknown_field also count as processed malformed, the others as rejected)",
            ["reason"],
            registry=registry,
        )
        self.rejected = {reason: rejected.labels(reason) for reason in REJECT_REASONS}
        self.lag = Histogram(
            "codexpool_health_event_lag_seconds",
            "Time from an outcome's occurred_at to its aggregates being written",
            buckets=LAG_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            "codexpool_health_batch_events",
            "Events applied per Lua script call",
            buckets=(1, 2, 5, 10, 25, 50, 100, 200, 500),
            registry=registry,
        )
        self.score = Gauge(
            "codexpool_health_score",
            "Health score 0-100 of a provider, across pools",
            ["provider"],
            registry=registry,
        )
        self.band_changes = Counter(
            "codexpool_health_band_changes_total",
            "Providers that moved to another health band, by the band they moved to",
            ["band"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "codexpool_health_redis_errors_total",
            "Failed attempts at writing a batch to Redis (the batch is retried, never dropped)",
            registry=registry,
        )
