"""The router's Prometheus metrics (``codexpool_router_*``); labels are small closed sets."""

from __future__ import annotations

from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

AccountState = Literal["closed", "open", "half_open", "cooling_down", "needs_reauth"]
"""A provider's state as this replica last saw it (``codexpool_router_account_state``)."""
_ACCOUNT_STATES: tuple[AccountState, ...] = get_args(AccountState)

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
        self.background_errors = Counter(
            "codexpool_router_background_errors_total",
            "Live-state writes that failed (quota, cooldown, circuit, affinity).",
            registry=registry,
        )

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
