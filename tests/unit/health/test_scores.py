from __future__ import annotations

from prometheus_client import CollectorRegistry

from codexpool_health.metrics import HealthMetrics
from codexpool_health.scores import ScoreReporter
from codexpool_health.store import ProviderScore
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.testing.messaging import InMemoryPublisher


async def test_only_band_crossings_publish_a_status_event() -> None:
    registry = CollectorRegistry()
    publisher = InMemoryPublisher()
    await publisher.start()
    report = ScoreReporter(HealthMetrics(registry), publisher)
    report(
        [
            ProviderScore("p1", 92.0, "healthy", None),
            ProviderScore("p2", 91.0, "healthy", "healthy"),
            ProviderScore("p3", 41.5, "unhealthy", "degraded"),
            ProviderScore("p4", 45.0, "unhealthy", None),
        ]
    )
    events = [e for e in publisher.events if isinstance(e, ProviderStatusChangedV1)]
    assert len(events) == len(publisher.events)
    changes = [(e.provider, e.previous, e.current, e.health_score) for e in events]
    assert changes == [("p3", "degraded", "unhealthy", 41.5), ("p4", None, "unhealthy", 45.0)]
    assert events[0].reason == "score 41.50 < 50"
    assert registry.get_sample_value("codexpool_health_score", {"provider": "p2"}) == 91.0
    assert (
        registry.get_sample_value("codexpool_health_band_changes_total", {"band": "unhealthy"}) == 2
    )
