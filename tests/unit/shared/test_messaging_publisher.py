"""EventPublisher without a broker: a fault proxy in blackhole mode stands in for a hung one."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from codexpool_shared.messaging import EventPublisher, PublisherState, PublisherStateError
from codexpool_shared.testing.faultproxy import FaultProxy
from codexpool_shared.testing.messaging import sample_outcome

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def hung_broker_url() -> AsyncIterator[str]:
    """An AMQP URL whose "broker" accepts connections and never answers."""
    async with FaultProxy("127.0.0.1", 9) as proxy:
        proxy.blackhole()
        yield proxy.url_for("amqp://guest:guest@127.0.0.1:5672/")


def _publisher(url: str, registry: CollectorRegistry | None = None, **kw: object) -> EventPublisher:
    return EventPublisher(
        url,
        "unit",
        registry=registry,
        connect_timeout_s=0.2,
        publish_timeout_s=0.2,
        backoff_s=(0.01, 0.05),
        **kw,  # type: ignore[arg-type]
    )


async def test_lifecycle_errors_are_explicit(hung_broker_url: str) -> None:
    publisher = _publisher(hung_broker_url)
    with pytest.raises(PublisherStateError, match="start"):
        publisher.publish(sample_outcome())
    await publisher.start()
    with pytest.raises(PublisherStateError):
        await publisher.start()
    await publisher.close(deadline_s=0.1)
    assert publisher.state is PublisherState.CLOSED
    with pytest.raises(PublisherStateError, match="closed"):
        publisher.publish(sample_outcome())
    await publisher.close()  # idempotent


async def test_hung_broker_never_blocks_and_drops_are_exact(hung_broker_url: str) -> None:
    registry = CollectorRegistry()
    publisher = _publisher(hung_broker_url, registry, buffer_size=50, batch_size=10)
    await publisher.start()
    durations = []
    for _ in range(57):
        started = time.perf_counter()
        publisher.publish(sample_outcome())
        durations.append(time.perf_counter() - started)
    # publish() is synchronous: it returned without the event loop (or the broker) running.
    assert not asyncio.iscoroutinefunction(publisher.publish)
    assert publisher.buffered == 50
    # A generous bound (a loaded machine preempts single calls for milliseconds): waiting on
    # the broker would cost its timeouts, seconds.
    assert sum(durations) < 0.5
    await asyncio.sleep(0.5)  # let the sender fail a few times; nothing may change

    assert publisher.buffered == 50
    assert publisher.stats.dropped == {"buffer_full": 7}
    assert publisher.stats.published == 0
    sample = registry.get_sample_value
    assert sample("codexpool_event_buffer_depth") == 50
    assert sample("codexpool_events_dropped_total", {"reason": "buffer_full"}) == 7
    assert sample("codexpool_events_dropped_total", {"reason": "shutdown"}) == 0
    assert sample("codexpool_events_published_total") == 0

    started = time.monotonic()
    await publisher.close(deadline_s=0.3)
    assert time.monotonic() - started < 0.3 + 1.0
    assert publisher.stats.dropped == {"buffer_full": 7, "shutdown": 50}
    assert sample("codexpool_events_dropped_total", {"reason": "shutdown"}) == 50
    assert sample("codexpool_event_buffer_depth") == 0


async def test_refused_connections_are_retried_quietly() -> None:
    publisher = _publisher("amqp://guest:guest@127.0.0.1:9/")  # discard port: refused
    await publisher.start()
    publisher.publish(sample_outcome())
    await asyncio.sleep(0.2)
    assert publisher.buffered == 1
    await publisher.close(deadline_s=0.1)
    assert publisher.stats.dropped == {"shutdown": 1}


async def test_metrics_go_to_the_given_registry_only(hung_broker_url: str) -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    _publisher(hung_broker_url, first)
    _publisher(hung_broker_url, second)  # no clash: each app owns its registry
    assert first.get_sample_value("codexpool_events_publish_failures_total") == 0


def test_rejects_nonsense_sizes() -> None:
    with pytest.raises(ValueError):
        EventPublisher("amqp://x/", "unit", buffer_size=0)


async def test_a_buffered_event_does_not_keep_its_callers_span_alive(hung_broker_url: str) -> None:
    # A broker outage buffers thousands of events: each must hold its parent's span context,
    # not the request's span with its attributes (about 3 KB an event in the outage bench).
    tracer = TracerProvider().get_tracer("test")
    publisher = _publisher(hung_broker_url)
    await publisher.start()
    try:
        with tracer.start_as_current_span("request") as span:
            publisher.publish(sample_outcome())
            released = weakref.ref(span)
        del span
        gc.collect()
        assert released() is None
        assert publisher.buffered == 1
    finally:
        await publisher.close(deadline_s=0.1)
