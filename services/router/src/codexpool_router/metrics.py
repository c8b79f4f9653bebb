"""The router's Prometheus metrics (``codexpool_router_*``); labels are small closed sets.

``provider`` labels carry registry slugs: bounded by the registry, not by traffic. The labelled
children the hot path touches are looked up once per label set and kept (``_Children``), so a
request pays a dict lookup per metric, not prometheus_client's label validation and lock.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

AccountState = Literal["closed", "open", "half_open", "cooling_down", "needs_reauth"]
"""A provider's state as this replica last saw it (``codexpool_router_account_state``)."""
_ACCOUNT_STATES: tuple[AccountState, ...] = get_args(AccountState)

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

M = TypeVar("M", Counter, Histogram)


class _Children(Generic[M]):
    """The children of a labelled metric, each built once per label set."""

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *labels: str) -> M:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = _Children(
            Counter(
                "codexpool_router_requests_total",
                "Client requests by route and final outcome.",
                ["route", "outcome"],
                registry=registry,
            )
        )
        self._request_duration = _Children(
            Histogram(
                "codexpool_router_request_duration_seconds",
                "Client-facing request duration, from arrival to the last byte sent to the "
                "client (or to the end of the request when the client left first).",
                ["route", "outcome"],
                buckets=_LATENCY,
                registry=registry,
            )
        )
        self._request_ttfb = _Children(
            Histogram(
                "codexpool_router_request_ttfb_seconds",
                "Client-facing time to first byte: from arrival to the answer's status line, "
                "streamed or not, errors included.",
                ["route", "outcome"],
                buckets=_LATENCY,
                registry=registry,
            )
        )
        self._attempts = _Children(
            Counter(
                "codexpool_router_attempts_total",
                "Upstream attempts by provider and outcome class.",
                ["provider", "outcome"],
                registry=registry,
            )
        )
        self._failovers = _Children(
            Counter(
                "codexpool_router_failovers_total",
                "Switches to another provider within a request, by the provider that failed "
                "and its attempt's class.",
                ["provider", "reason"],
                registry=registry,
            )
        )
        self.retry_budget_exhausted = Counter(
            "codexpool_router_retry_budget_exhausted_total",
            "Failovers refused because this replica's retry budget was spent.",
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
        self._cooldowns = _Children(
            Counter(
                "codexpool_router_cooldowns_total",
                "Cooldowns started, by provider and reason.",
                ["provider", "reason"],
                registry=registry,
            )
        )
        self._circuit = _Children(
            Counter(
                "codexpool_router_circuit_transitions_total",
                "Circuit transitions made by this replica (opened, probe, closed), by provider.",
                ["provider", "transition"],
                registry=registry,
            )
        )
        self.refreshes = Counter(
            "codexpool_router_token_refreshes_total",
            "Token refresh outcomes (refreshed, adopted, refused, failed, timeout).",
            ["result"],
            registry=registry,
        )
        self.store_errors = Counter(
            "codexpool_router_store_unavailable_total",
            "Requests answered 503 because Redis was unreachable and this replica had no fresh "
            "snapshot of the agent (usage and models routes: whenever Redis is unreachable).",
            registry=registry,
        )
        self.in_flight = Gauge(
            "codexpool_router_in_flight",
            "Requests of the responses routes in progress.",
            registry=registry,
        )
        self._account_states: dict[str, AccountState] = {}
        self._account_state = Gauge(
            "codexpool_router_account_state",
            "1 for the state each provider was last seen in by this replica, 0 for the others.",
            ["provider", "state"],
            registry=registry,
        )
        self.store_fallback = Counter(
            "codexpool_router_store_fallback_total",
            "Requests served from the local snapshot because Redis failed (error, timeout) or "
            "the store breaker was open (breaker_open).",
            ["reason"],
            registry=registry,
        )
        self.store_breaker = Gauge(
            "codexpool_router_store_breaker_state",
            "The store breaker: 0 closed, 1 open (serving from snapshots), 2 half-open.",
            registry=registry,
        )
        self.tokens_held = Gauge(
            "codexpool_router_tokens_held",
            "Access tokens this replica holds decrypted; a member whose token it does not hold "
            "is skipped while Redis is down.",
            registry=registry,
        )
        self.background_errors = Counter(
            "codexpool_router_background_errors_total",
            "Live-state writes that failed (quota, cooldown, circuit, affinity).",
            registry=registry,
        )

    def request(self, route: str, outcome: str, ttfb_s: float | None, duration_s: float) -> None:
        """Count one client request and observe its client-facing latencies.

        ``ttfb_s`` is None when nothing was ever sent (the client left first): the duration is
        still observed, the time to first byte is not.
        """
        self._requests(route, outcome).inc()
        self._request_duration(route, outcome).observe(duration_s)
        if ttfb_s is not None:
            self._request_ttfb(route, outcome).observe(ttfb_s)

    def attempt(self, provider: str, outcome: str) -> None:
        """Count one upstream attempt on ``provider``, by its outcome class."""
        self._attempts(provider, outcome).inc()

    def failover(self, provider: str, reason: str) -> None:
        """Count a switch away from ``provider``, whose attempt failed with ``reason``."""
        self._failovers(provider, reason).inc()

    def cooldown(self, provider: str, reason: str) -> None:
        """Count a cooldown of ``provider`` started by this replica."""
        self._cooldowns(provider, reason).inc()

    def circuit(self, provider: str, transition: Literal["opened", "probe", "closed"]) -> None:
        """Count a circuit transition of ``provider`` made by this replica."""
        self._circuit(provider, transition).inc()

    def account_state(self, provider: str, state: AccountState) -> None:
        """Record ``provider``'s state; provider names are registry slugs, so few and bounded.

        Called for every candidate and attempt: the gauges are written only when the state
        changes, so the common call is one dict lookup, not five labelled sets.
        """
        if self._account_states.get(provider) == state:
            return
        self._account_states[provider] = state
        for each in _ACCOUNT_STATES:
            self._account_state.labels(provider, each).set(1 if each == state else 0)
