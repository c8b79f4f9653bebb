from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

RESULTS = ("applied", "duplicate", "malformed", "ignored")

LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class _Processed(Collector):
    # "malformed" is decided (and counted) by the shared consumer before a handler runs, so the
    # family is assembled at scrape time from both sources rather than double-bookkept.
    def __init__(self, counts: Counter[str], malformed: Callable[[], int]) -> None:
        self._counts = counts
        self._malformed = malformed

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "codexpool_health_events_processed",
            "Outcome events handled by the health service, by result",
            labels=["result"],
        )
        for result in RESULTS:
            value = self._malformed() if result == "malformed" else self._counts[result]
            family.add_metric([result], value)
        yield family


class HealthMetrics:
    """The health service's metrics, on the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed: Counter[str] = Counter()
        self._malformed: Callable[[], int] = lambda: 0
        registry.register(_Processed(self.processed, lambda: self._malformed()))
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
        self.band_changes = PromCounter(
            "codexpool_health_band_changes_total",
            "Providers that moved to another health band, by the band they moved to",
            ["band"],
            registry=registry,
        )
        self.redis_errors = PromCounter(
            "codexpool_health_redis_errors_total",
            "Failed attempts at writing a batch to Redis (the batch is retried, never dropped)",
            registry=registry,
        )

    def count_malformed_with(self, source: Callable[[], int]) -> None:
        """Read the malformed count from the consumer that dead-letters such messages."""
        self._malformed = source
