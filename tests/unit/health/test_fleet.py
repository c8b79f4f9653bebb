"""The fleet view: provider states as the selection script sees them, pools, quotas, and the
gauges following what is read (series of what is gone are removed)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from codexpool_health.fleet import Fleet, FleetMetrics, fleet_of, provider_state
from codexpool_shared.store import LiveState, Provider, QuotaSnapshot, QuotaWindow

NOW_MS = 1_800_000_000_000


def provider(name: str, status: str = "active") -> Provider:
    return Provider.model_validate(
        {
            "name": name,
            "account_id": "a",
            "status": status,
            "credential_version": 1,
            "created_at": 0,
        }
    )


def live(name: str, **fields: Any) -> LiveState:
    return LiveState.model_validate({"provider": name, **fields})


def test_the_state_follows_status_cooldown_and_circuit_in_the_selection_scripts_order() -> None:
    later, earlier = NOW_MS + 1000, NOW_MS - 1000
    cases = [
        (provider("p", "needs_reauth"), live("p", cooldown_until_ms=later), "needs_reauth"),
        (provider("p", "disabled"), live("p"), "disabled"),
        (
            provider("p"),
            live("p", cooldown_until_ms=later, circuit_open_until_ms=later),
            "cooling_down",
        ),
        (provider("p"), live("p", cooldown_until_ms=earlier, circuit_open_until_ms=later), "open"),
        (provider("p"), live("p", circuit_open_until_ms=earlier), "half_open"),
        (provider("p"), live("p", cooldown_until_ms=earlier), "closed"),
    ]
    for each, state, expected in cases:
        assert provider_state(each, state, NOW_MS) == expected


def test_available_members_are_active_members_with_a_closed_or_half_open_circuit() -> None:
    providers = [provider("a"), provider("b"), provider("c", "needs_reauth"), provider("d")]
    lives = {
        "a": live("a"),
        "b": live("b", cooldown_until_ms=NOW_MS + 1),
        "c": live("c"),
        "d": live("d", circuit_open_until_ms=NOW_MS - 1),
    }
    pools = {"agent-1": ("a", "b", "c", "d"), "agent-2": ("b", "c"), "agent-3": ("gone",)}
    fleet = fleet_of(providers, lives, pools, NOW_MS)
    assert fleet.pools == {"agent-1": (4, 2), "agent-2": (2, 0), "agent-3": (1, 0)}
    assert fleet.states == {
        "a": "closed",
        "b": "cooling_down",
        "c": "needs_reauth",
        "d": "half_open",
    }


def test_quota_windows_report_used_percent_and_seconds_to_reset() -> None:
    snapshot = QuotaSnapshot(
        primary=QuotaWindow(used_percent=93.5, window_minutes=300, resets_at=NOW_MS // 1000 + 7200),
        secondary=QuotaWindow(used_percent=40.0, resets_at=NOW_MS // 1000 - 5),
        observed_at_ms=NOW_MS,
    )
    unknown_reset = QuotaSnapshot(primary=QuotaWindow(used_percent=10.0), observed_at_ms=NOW_MS)
    lives = {"a": live("a", quota=snapshot), "b": live("b", quota=unknown_reset), "c": live("c")}
    fleet = fleet_of([provider("a"), provider("b"), provider("c")], lives, {}, NOW_MS)
    assert fleet.quotas == {
        ("a", "primary"): (93.5, 7200.0),
        # Its reset time has passed: the upstream starts the window afresh.
        ("a", "secondary"): (0.0, 0.0),
        ("b", "primary"): (10.0, None),
    }


def test_series_of_agents_and_providers_that_disappear_are_removed() -> None:
    registry = CollectorRegistry()
    metrics = FleetMetrics(registry)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    metrics.show(
        Fleet(
            {"agent-1": (2, 1), "agent-2": (1, 1)},
            {"a": "open", "b": "closed"},
            {("a", "primary"): (95.0, 4000.0), ("b", "primary"): (5.0, None)},
        )
    )
    metrics.show_queues({"ns.health.outcomes": 7, "ns.health.outcomes.dlq": 0})
    assert value("codexpool_health_pool_members", agent="agent-1") == 2
    assert value("codexpool_health_pool_available_members", agent="agent-1") == 1
    assert value("codexpool_health_provider_state", provider="a", state="open") == 1
    assert value("codexpool_health_provider_state", provider="a", state="closed") == 0
    assert value("codexpool_health_quota_used_percent", provider="a", window="primary") == 95
    assert value("codexpool_health_quota_reset_seconds", provider="a", window="primary") == 4000
    assert value("codexpool_health_quota_reset_seconds", provider="b", window="primary") is None
    assert value("codexpool_health_queue_messages", queue="ns.health.outcomes") == 7

    metrics.show(Fleet({"agent-1": (1, 0)}, {"a": "cooling_down"}, {}))
    metrics.show_queues(None)
    assert value("codexpool_health_pool_members", agent="agent-2") is None
    assert value("codexpool_health_pool_available_members", agent="agent-1") == 0
    assert value("codexpool_health_provider_state", provider="b", state="closed") is None
    assert value("codexpool_health_provider_state", provider="a", state="cooling_down") == 1
    assert value("codexpool_health_quota_used_percent", provider="a", window="primary") is None
    assert value("codexpool_health_queue_messages", queue="ns.health.outcomes") is None
