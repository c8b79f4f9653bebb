"""The health app in-process against real RabbitMQ and Redis: poison messages, status events,
a Redis outage, and the consume span joining the router's trace."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from codexpool_health.app import create_app
from codexpool_health.config import Settings
from codexpool_health.deps import State
from codexpool_shared import telemetry
from codexpool_shared.activity import ALL_POOLS
from codexpool_shared.events import BaseEvent, ProviderStatusChangedV1, RequestRejectedV1
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import Topology, encode
from codexpool_shared.service import state_in
from codexpool_shared.testing.faultproxy import FaultProxy
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.conftest import RedisTarget
from tests.integration.health.conftest import Publish, poll_until
from tests.unit.health.factories import attempt, outcome_event


@asynccontextmanager
async def running(
    infra: InfraUrls,
    redis_target: RedisTarget,
    namespace: str,
    publisher: InMemoryPublisher,
    **overrides: Any,
) -> AsyncIterator[State]:
    settings = Settings.model_validate(
        {
            "REDIS_URL": redis_target.url,
            "REDIS_CLUSTER": redis_target.cluster,
            "AMQP_URL": infra.amqp_url,
            "CODEXPOOL_NAMESPACE": namespace,
            **overrides,
        }
    )
    app: FastAPI = create_app(settings, publisher=publisher)
    async with app.router.lifespan_context(app) as state:
        yield state_in(state or {}, State)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def processed(state: State, result: str) -> Callable[[], Any]:
    async def probe() -> bool:
        return (
            sample(state.infra.registry, "codexpool_health_events_processed_total", result=result)
            > 0
        )

    return probe


async def dlq_depth(channel: AbstractChannel, namespace: str) -> int:
    queue = await channel.declare_queue(Topology(namespace).health_dlq, passive=True)
    return int(queue.declaration_result.message_count or 0)


async def test_poison_messages_go_to_the_dlq_and_are_counted(
    infra: InfraUrls,
    redis_target: RedisTarget,
    namespace: str,
    redis: Redis,
    channel: AbstractChannel,
    publish: Publish,
) -> None:
    async with running(infra, redis_target, namespace, InMemoryPublisher(namespace)) as state:
        good = outcome_event(time.time(), attempt("p1"))
        await publish([b"{not json", b'{"type": "request.outcome.v9", "event_id": "x"}', good])

        async def settled() -> bool:
            registry = state.infra.registry
            total = "codexpool_health_events_processed_total"
            return (
                sample(registry, total, result="malformed") == 2
                and sample(registry, total, result="applied") == 1
            )

        await poll_until(settled, what="two malformed and one applied")

        async def dead_lettered() -> bool:
            return await dlq_depth(channel, namespace) == 2

        await poll_until(dead_lettered, what="both poison messages in the DLQ")
        totals = await redis.hgetall(Keys(namespace).health_totals(ALL_POOLS, "p1"))
        assert totals[b"requests"] == b"1"


async def test_a_band_crossing_publishes_status_events_in_order(
    infra: InfraUrls, redis_target: RedisTarget, namespace: str, publish: Publish
) -> None:
    publisher = InMemoryPublisher(namespace)
    async with running(infra, redis_target, namespace, publisher):
        events = [
            outcome_event(time.time(), attempt("p1", "server_error"), attempt("p2", fallback=True))
            for _ in range(15)
        ]
        await publish(events)

        async def unhealthy() -> bool:
            changes = [e for e in publisher.events if isinstance(e, ProviderStatusChangedV1)]
            return bool(changes) and changes[-1].current == "unhealthy"

        await poll_until(unhealthy, what="p1 to be reported unhealthy")
    changes = [e for e in publisher.events if isinstance(e, ProviderStatusChangedV1)]
    assert {c.provider for c in changes} == {"p1"}
    # One batch may take p1 straight from no score to unhealthy.
    assert changes[0].previous in (None, "healthy")
    for before, after in zip(changes, changes[1:], strict=False):
        assert after.previous == before.current
    assert all(c.dimension == "health" and c.actor == "health" for c in changes)
    assert changes[-1].health_score is not None and changes[-1].health_score < 50


# Through a fault proxy: a cluster client would follow the nodes' own addresses around it.
@pytest.mark.parametrize("redis_target", ["server"], indirect=True)
async def test_a_redis_outage_holds_events_without_dead_lettering_them(
    infra: InfraUrls,
    redis_target: RedisTarget,
    namespace: str,
    redis: Redis,
    channel: AbstractChannel,
    publish: Publish,
) -> None:
    target = urlsplit(infra.redis_url)
    async with FaultProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        async with running(
            infra,
            redis_target,
            namespace,
            InMemoryPublisher(namespace),
            REDIS_URL=proxy.url_for(infra.redis_url),
            CODEXPOOL_REDIS_TIMEOUT_S=0.2,
            HEALTH_REDIS_RETRY_MAX_S=0.2,
        ) as state:
            proxy.blackhole()
            events = [outcome_event(time.time(), attempt("p1")) for _ in range(30)]
            await publish(events)

            async def retried_past_the_delivery_limit() -> bool:
                errors = "codexpool_health_redis_errors_total"
                return sample(state.infra.registry, errors) >= 8

            await poll_until(retried_past_the_delivery_limit, what="retries while Redis is down")
            assert await dlq_depth(channel, namespace) == 0
            proxy.pass_through()

            async def all_applied() -> bool:
                total = "codexpool_health_events_processed_total"
                return sample(state.infra.registry, total, result="applied") == len(events)

            await poll_until(all_applied, what="every held event to be applied")
    assert await dlq_depth(channel, namespace) == 0
    totals = await redis.hgetall(Keys(namespace).health_totals(ALL_POOLS, "p1"))
    assert totals[b"requests"] == b"30"


# A RabbitMQ fault: the store it writes to does not matter.
@pytest.mark.parametrize("redis_target", ["server"], indirect=True)
async def test_the_consumer_reconnects_after_losing_rabbitmq(
    infra: InfraUrls,
    redis_target: RedisTarget,
    namespace: str,
    redis: Redis,
    channel: AbstractChannel,
    publish: Publish,
) -> None:
    target = urlsplit(infra.amqp_url)
    async with FaultProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        publisher = InMemoryPublisher(namespace)
        async with running(
            infra, redis_target, namespace, publisher, AMQP_URL=proxy.url_for(infra.amqp_url)
        ) as state:
            total = "codexpool_health_events_processed_total"

            def applied(count: int) -> Callable[[], Any]:
                async def probe() -> bool:
                    return sample(state.infra.registry, total, result="applied") == count

                return probe

            await publish([outcome_event(time.time(), attempt("p1")) for _ in range(10)])
            await poll_until(applied(10), what="the first events")
            proxy.reset()
            proxy.pass_through()
            await publish([outcome_event(time.time(), attempt("p1")) for _ in range(10)])
            await poll_until(applied(20), what="events after the reconnect")
    totals = await redis.hgetall(Keys(namespace).health_totals(ALL_POOLS, "p1"))
    assert totals[b"requests"] == b"20"


async def test_the_consume_span_continues_the_routers_trace(
    infra: InfraUrls, redis_target: RedisTarget, namespace: str, publish: Publish
) -> None:
    telemetry.configure("codexpool-health-test")
    with telemetry.capture_spans() as spans:
        async with running(infra, redis_target, namespace, InMemoryPublisher(namespace)) as state:
            tracer = trace.get_tracer("test")
            with tracer.start_as_current_span("publish", kind=SpanKind.PRODUCER) as producer:
                context = producer.get_span_context()
                traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
            event = outcome_event(time.time(), attempt("p1"), traceparent=traceparent)
            await publish([event])
            await poll_until(processed(state, "applied"), what="the event to be applied")
    finished = spans.get_finished_spans()
    in_trace = [s for s in finished if s.context.trace_id == context.trace_id]
    consume = next(s for s in in_trace if s.kind == SpanKind.CONSUMER)
    assert consume.parent is not None and consume.parent.span_id == context.span_id
    assert consume.attributes is not None
    assert consume.attributes["messaging.system"] == "rabbitmq"
    apply = next(s for s in in_trace if s.name == "apply outcomes")
    assert apply.parent is not None and apply.parent.span_id == consume.context.span_id
    script = [s for s in in_trace if s.parent and s.parent.span_id == apply.context.span_id]
    assert script, "the Redis call nests under the apply span"


async def test_insane_events_are_dead_lettered_by_reason_and_good_ones_keep_flowing(
    infra: InfraUrls,
    redis_target: RedisTarget,
    namespace: str,
    redis: Redis,
    channel: AbstractChannel,
    publish: Publish,
) -> None:
    now = time.time()
    unknown_field = json.loads(encode(outcome_event(now, attempt("p1"))))
    unknown_field["attempts"][0]["added_by_a_newer_router"] = 1
    insane: list[BaseEvent | bytes] = [
        outcome_event(now + 3600, attempt("p1")),  # an hour ahead of this clock
        outcome_event(now + 365 * 86400 * 900, attempt("p1")),  # year 2900-something
        outcome_event(now - 3 * 86400, attempt("p1")),  # older than the hourly timeline
        outcome_event(now, attempt("p" * 5000)),
        outcome_event(now, attempt("p1"), agent="Agent With Spaces"),
        outcome_event(now, attempt("p1"), model="m" * 5000),
        json.dumps(unknown_field).encode(),
    ]
    rejection = RequestRejectedV1(
        request_id="r", reason="invalid_api_key", status_code=401, route="v1"
    )
    good = outcome_event(now, attempt("p1"))
    async with running(infra, redis_target, namespace, InMemoryPublisher(namespace)) as state:
        await publish([*insane, rejection, good])
        registry = state.infra.registry

        async def settled() -> bool:
            return (
                sample(registry, "codexpool_health_events_processed_total", result="applied") == 1
            )

        await poll_until(settled, what="the good event applied after the insane ones")

        async def dead_lettered() -> bool:
            return await dlq_depth(channel, namespace) == len(insane)

        await poll_until(dead_lettered, what="every insane event in the DLQ")
        rejected = {
            reason: sample(registry, "codexpool_health_events_rejected_total", reason=reason)
            for reason in ("future", "stale", "bad_name", "unknown_field", "malformed")
        }
        assert rejected == {
            "future": 2,
            "stale": 1,
            "bad_name": 3,
            "unknown_field": 1,
            "malformed": 0,
        }
        processed_total = "codexpool_health_events_processed_total"
        assert sample(registry, processed_total, result="rejected") == 6
        assert sample(registry, processed_total, result="malformed") == 1
        # A rejection event reaching this queue is acked and skipped, never dead-lettered.
        assert sample(registry, processed_total, result="ignored") == 1
    keys = Keys(namespace)
    totals = await redis.hgetall(keys.health_totals(ALL_POOLS, "p1"))
    assert totals[b"requests"] == b"1"
    assert await redis.keys(keys.health_totals(ALL_POOLS, "p" * 5000)) == []
