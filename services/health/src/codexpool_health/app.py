from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from codexpool_health.batcher import OutcomeBatcher
from codexpool_health.config import Settings
from codexpool_health.consumers import outcome_consumer
from codexpool_health.deps import State
from codexpool_health.fleet import FleetMetrics, FleetReporter, QueueDepth
from codexpool_health.metrics import HealthMetrics
from codexpool_health.runway import RunwayMetrics, RunwayMonitor, runway_forever
from codexpool_health.scores import ScoreReporter, rescore_forever
from codexpool_health.scoring import ScoreConfig
from codexpool_health.store import HealthStore
from codexpool_shared import telemetry
from codexpool_shared.drain import Drain
from codexpool_shared.errors import install_error_handlers
from codexpool_shared.messaging import Publisher, Topology
from codexpool_shared.probes import probe_router
from codexpool_shared.service import (
    api_options,
    lifespan_state,
    open_infrastructure,
    redis_readiness,
    service_registry,
)
from codexpool_shared.tasks import stop


def create_app(
    settings: Settings, *, publisher: Publisher | None = None, drain: Drain | None = None
) -> FastAPI:
    """The health service; ``publisher`` replaces the RabbitMQ publisher (tests pass a fake),
    ``drain`` is the process's (``serve`` makes it)."""
    drain = drain or Drain(settings.drain_timeout_s)
    telemetry.configure("codexpool-health")
    registry = service_registry()
    metrics = HealthMetrics(registry)
    fleet_metrics = FleetMetrics(registry)
    runway_metrics = RunwayMetrics(registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[Mapping[str, object]]:
        async with AsyncExitStack() as stack:
            infra = await open_infrastructure(
                stack, settings, registry, name="codexpool-health", publisher=publisher
            )
            store = HealthStore(
                infra.redis,
                infra.keys,
                score=ScoreConfig.from_settings(settings),
                seen_ttl_s=settings.dedupe_ttl_s,
                log_maxlen=settings.outcome_log_maxlen,
                explain_ttl_s=settings.explain_ttl_s,
                recent_max=settings.recent_requests,
                score_refresh_s=settings.score_refresh_s,
            )
            report = ScoreReporter(metrics, infra.publisher)
            batcher = OutcomeBatcher(
                store,
                metrics,
                report,
                queue=Topology(settings.namespace).health_queue,
                batch_size=settings.batch_size,
                linger_s=settings.batch_linger_ms / 1000,
                max_linger_s=settings.batch_max_linger_ms / 1000,
                retry_max_s=settings.redis_retry_max_s,
            )
            await batcher.start()
            stack.push_async_callback(batcher.close)
            queues = None
            if settings.consume:
                # Without the consumer nothing declares the queues a passive declare reads.
                topology = Topology(settings.namespace)
                queues = QueueDepth(
                    str(settings.amqp_url),
                    (topology.health_queue, topology.health_dlq),
                    name="codexpool-health-fleet",
                )
                stack.push_async_callback(queues.close)
            fleet = FleetReporter(infra.redis, infra.keys, fleet_metrics, queues)
            rescorer = asyncio.create_task(
                rescore_forever(store, report, settings.rescore_interval_s, fleet)
            )
            stack.push_async_callback(stop, rescorer)
            monitor = RunwayMonitor(
                infra.redis,
                infra.keys,
                infra.publisher,
                runway_metrics,
                history_maxlen=settings.quota_history_maxlen,
            )
            runway = asyncio.create_task(runway_forever(monitor, settings.forecast_interval_s))
            stack.push_async_callback(stop, runway)
            if settings.consume:
                consumer = outcome_consumer(
                    str(settings.amqp_url),
                    settings.namespace,
                    batcher,
                    metrics,
                    registry,
                    prefetch=settings.prefetch,
                    max_future_s=settings.max_future_s,
                    max_event_age_s=settings.max_event_age_s,
                )
                # Readiness never depends on RabbitMQ: this returns at once and keeps trying.
                await consumer.start()
                # Runs first on exit: stop taking deliveries and let the batches in flight land.
                stack.push_async_callback(consumer.stop, 5.0)
            yield lifespan_state(State(settings=settings, infra=infra, store=store))

    app = FastAPI(title="codexpool-health", lifespan=lifespan, **api_options(settings))
    install_error_handlers(app)
    telemetry.instrument_app(app)

    app.include_router(probe_router(registry, redis_readiness, drain))
    return app
