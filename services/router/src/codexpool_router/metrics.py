"""The router's Prometheus metrics (``codexpool_router_*``); labels are small closed sets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "codexpool_router_requests_total",
            "Client requests by route and final outcome.",
            ["route", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "codexpool_router_attempts_total",
            "Upstream attempts by outcome class.",
            ["outcome"],
            registry=registry,
        )
        self.failovers = Counter(
            "codexpool_router_failovers_total",
            "Switches to another provider within a request, by the failed attempt's class.",
            ["reason"],
            registry=registry,
        )
        self.ttfb = Histogram(
            "codexpool_router_upstream_ttfb_seconds",
            "Upstream time to first byte per attempt.",
            buckets=_LATENCY,
            registry=registry,
        )
        self.duration = Histogram(
            "codexpool_router_upstream_duration_seconds",
            "Upstream attempt duration, start to end of stream.",
            buckets=_LATENCY,
            registry=registry,
        )
        self.cooldowns = Counter(
            "codexpool_router_cooldowns_total",
            "Cooldowns started, by reason.",
            ["reason"],
            registry=registry,
        )
        self.circuit = Counter(
            "codexpool_router_circuit_transitions_total",
            "Circuit transitions made by this replica (opened, probe, closed).",
            ["transition"],
            registry=registry,
        )
        self.refreshes = Counter(
            "codexpool_router_token_refreshes_total",
            "Token refresh outcomes (refreshed, adopted, refused, failed, timeout).",
            ["result"],
            registry=registry,
        )
        self.store_errors = Counter(
            "codexpool_router_store_unavailable_total",
            "Requests answered 503 because Redis was unreachable (fail-fast policy).",
            registry=registry,
        )
        self.background_errors = Counter(
            "codexpool_router_background_errors_total",
            "Live-state writes that failed (quota, cooldown, circuit, affinity).",
            registry=registry,
        )
