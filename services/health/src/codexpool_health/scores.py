"""What follows a new score: the gauge, and a ``provider.status_changed.v1`` on a band change.

The band change is decided inside the Lua script that wrote the score, atomically with reading
the previous band, so among competing health processes exactly one sees each crossing and
publishes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError

from codexpool_health.fleet import FleetReporter
from codexpool_health.metrics import HealthMetrics
from codexpool_health.store import HealthStore, ProviderScore
from codexpool_shared.activity import DEGRADED_MIN, HEALTHY_MIN
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.messaging import Publisher
from codexpool_shared.tasks import raise_if_cancelling

log = logging.getLogger("codexpool_health")


def _reason(score: ProviderScore) -> str:
    if score.band == "healthy":
        return f"score {score.score:.2f} >= {HEALTHY_MIN:g}"
    if score.band == "degraded":
        return f"score {score.score:.2f} in [{DEGRADED_MIN:g}, {HEALTHY_MIN:g})"
    return f"score {score.score:.2f} < {DEGRADED_MIN:g}"


class ScoreReporter:
    """Turns script results into metrics and status events."""

    def __init__(self, metrics: HealthMetrics, publisher: Publisher) -> None:
        self._metrics = metrics
        self._publisher = publisher

    def __call__(self, scores: Sequence[ProviderScore]) -> None:
        for score in scores:
            self._metrics.score.labels(score.provider).set(score.score)
            if not score.crossed:
                continue
            self._metrics.band_changes.labels(score.band).inc()
            log.info("provider %s is now %s (%s)", score.provider, score.band, _reason(score))
            self._publisher.publish(
                ProviderStatusChangedV1(
                    provider=score.provider,
                    dimension="health",
                    previous=score.previous,
                    current=score.band,
                    reason=_reason(score),
                    health_score=score.score,
                    actor="health",
                )
            )


async def rescore_forever(
    store: HealthStore,
    report: ScoreReporter,
    interval_s: float,
    fleet: FleetReporter | None = None,
) -> None:
    """Rescore every known provider every ``interval_s``: faults age out even with no traffic.

    The fleet view (``fleet.py``) is exported at once and then after every rescoring.
    """
    while True:
        if fleet is not None:
            await fleet.refresh(time.time_ns() // 1_000_000)
        await asyncio.sleep(interval_s)
        try:
            report(await store.rescore())
        except RedisError as exc:
            log.warning("rescoring failed, will retry: %r", exc)
        except Exception:
            raise_if_cancelling()
            # A background loop: an unexpected error must not end rescoring for good.
            log.exception("rescoring failed, will retry")
