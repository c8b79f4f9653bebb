"""The messaging behaviour suite, written once and run on both backends (docs/STYLE.md point 19).

``MessagingSuite`` holds the tests; a tier subclasses it and provides a ``backend`` fixture:
``tests/unit/shared/test_messaging_suite.py`` on ``testing.broker.InMemoryBroker``,
``tests/integration/test_messaging_suite.py`` on the real RabbitMQ. The tests use
``EventConsumer`` and ``acking`` as the services do on both; the publisher is ``EventPublisher``
or ``InMemoryPublisher`` routing to the in-memory broker.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from codexpool_shared import telemetry
from codexpool_shared.events import BaseEvent, Event, PoolChangedV1
from codexpool_shared.messaging import (
    DELIVERY_LIMIT,
    OUTCOME_ROUTING_KEY,
    EventConsumer,
    MessageInfo,
    PublisherStats,
    SettlingHandler,
    Topology,
    acking,
)
from codexpool_shared.testing.messaging import sample_outcome

FAST_RETRY = (0.01, 0.05)
"""``acking``'s requeue delay in these tests: the delivery limit is reached in well under 1 s."""


async def eventually(check: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll ``check`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message taken from a dead-letter queue."""

    message_id: str | None
    reason: str
    """``x-death[0].reason``: ``rejected`` or ``delivery_limit``."""


class SuitePublisher(Protocol):
    """What the suite needs of a publisher: ``EventPublisher`` and ``InMemoryPublisher`` fit."""

    stats: PublisherStats

    def publish(self, event: BaseEvent) -> None:
        """Accept ``event`` for sending."""


class Backend(Protocol):
    """One broker the suite runs on; each test gets a fresh one (a namespace of its own)."""

    topology: Topology
    timeout_s: float
    """How long to wait for anything to arrive: longer on a broker shared with parallel runs."""

    async def publisher(self) -> SuitePublisher:
        """A started publisher to the namespace's exchange, closed after the test."""
        ...

    async def consume(self, handler: SettlingHandler) -> EventConsumer:
        """An ``EventConsumer`` of the health queue receiving already, stopped after the test."""
        ...

    async def publish_raw(self, body: bytes, *, message_id: str) -> None:
        """Publish ``body`` as it is to the exchange, routed as an outcome event."""
        ...

    async def dead_letters(self, want: int) -> list[DeadLetter]:
        """Take ``want`` messages from the health DLQ, waiting for them up to ``timeout_s``."""
        ...


class Received:
    """What a handler saw: event ids in order of arrival, and the infos."""

    def __init__(self, *, failures: Counter[str] | None = None) -> None:
        self.ids: list[str] = []
        self.infos: list[MessageInfo] = []
        self._failures = failures if failures is not None else Counter()
        """Event id -> how many more deliveries of it fail (-1 : all)."""

    async def handler(self, event: Event, info: MessageInfo) -> None:
        event_id = str(event.event_id)
        self.ids.append(event_id)
        self.infos.append(info)
        if self._failures[event_id]:
            self._failures[event_id] -= 1
            raise RuntimeError(f"delivery {info.delivery_count} of {event_id} fails")


def _settled(stats: PublisherStats) -> int:
    return stats.published + stats.dropped.total()


class MessagingSuite:
    """The behaviour both backends share. Subclasses provide a ``backend`` fixture."""

    @pytest.mark.timeout(60)
    async def test_events_arrive_exactly_once_in_order(self, backend: Backend) -> None:
        received = Received()
        consumer = await backend.consume(acking(received.handler))
        publisher = await backend.publisher()
        events = [sample_outcome(agent_id=f"agent-{i}") for i in range(300)]
        for event in events:
            publisher.publish(event)

        await eventually(
            lambda: len(received.ids) >= len(events), timeout_s=backend.timeout_s, what="events"
        )
        await eventually(
            lambda: consumer.stats.results["applied"] == len(events),
            timeout_s=backend.timeout_s,
            what="acks",
        )
        assert received.ids == [str(e.event_id) for e in events]
        assert publisher.stats.published == len(events)
        assert publisher.stats.dropped == Counter()
        assert consumer.stats.results == {"applied": len(events)}
        info = received.infos[0]
        assert (info.exchange, info.routing_key) == (backend.topology.exchange, OUTCOME_ROUTING_KEY)
        assert (info.message_id, info.redelivered, info.delivery_count) == (
            str(events[0].event_id),
            False,
            0,
        )

    @pytest.mark.timeout(60)
    async def test_a_failing_handler_is_retried_with_the_delivery_count(
        self, backend: Backend
    ) -> None:
        flaky = sample_outcome(agent_id="flaky")
        received = Received(failures=Counter({str(flaky.event_id): 2}))
        consumer = await backend.consume(acking(received.handler, retry_delay_s=FAST_RETRY))
        publisher = await backend.publisher()
        publisher.publish(flaky)

        await eventually(
            lambda: consumer.stats.results["applied"] == 1,
            timeout_s=backend.timeout_s,
            what="the third delivery",
        )
        assert [(i.delivery_count, i.redelivered) for i in received.infos] == [
            (0, False),
            (1, True),
            (2, True),
        ]
        assert consumer.stats.results == {"failed": 2, "applied": 1}

    @pytest.mark.timeout(60)
    async def test_a_handler_that_always_fails_ends_in_the_dlq_after_the_delivery_limit(
        self, backend: Backend
    ) -> None:
        poison, healthy = sample_outcome(agent_id="poison"), sample_outcome()
        received = Received(failures=Counter({str(poison.event_id): -1}))
        consumer = await backend.consume(acking(received.handler, retry_delay_s=FAST_RETRY))
        publisher = await backend.publisher()
        publisher.publish(poison)
        publisher.publish(healthy)

        [dead] = await backend.dead_letters(1)
        assert dead == DeadLetter(str(poison.event_id), "delivery_limit")
        tries = Counter(received.ids)
        # RabbitMQ 3.x dead-letters after the first delivery plus DELIVERY_LIMIT redeliveries;
        # 4.x may count the first one in.
        assert DELIVERY_LIMIT <= tries[str(poison.event_id)] <= DELIVERY_LIMIT + 1
        assert tries[str(healthy.event_id)] == 1
        await eventually(
            lambda: consumer.stats.results.total() == len(received.ids),
            timeout_s=backend.timeout_s,
            what="the last failure counted",
        )
        assert consumer.stats.results == {"applied": 1, "failed": tries[str(poison.event_id)]}

    @pytest.mark.timeout(60)
    async def test_a_malformed_body_is_dead_lettered_at_once_while_good_events_flow(
        self, backend: Backend
    ) -> None:
        received = Received()
        consumer = await backend.consume(acking(received.handler))
        publisher = await backend.publisher()
        good = [sample_outcome() for _ in range(20)]
        for index, event in enumerate(good):
            publisher.publish(event)
            if index == 10:
                # Published straight away: maybe ahead of events the publisher still buffers.
                await backend.publish_raw(
                    b'{"type": "request.outcome.v1", "oops": true}', message_id="bad"
                )

        await eventually(
            lambda: len(received.ids) == len(good), timeout_s=backend.timeout_s, what="events"
        )
        assert await backend.dead_letters(1) == [DeadLetter("bad", "rejected")]
        assert sorted(received.ids) == sorted(str(e.event_id) for e in good)
        await eventually(
            lambda: consumer.stats.results.total() == len(good) + 1,
            timeout_s=backend.timeout_s,
            what="all counted",
        )
        assert consumer.stats.results == {"applied": len(good), "malformed": 1}

    @pytest.mark.timeout(60)
    async def test_the_consumer_span_continues_the_producer_trace(self, backend: Backend) -> None:
        telemetry.configure("codexpool-messaging-suite")
        handler_trace_ids: list[int] = []

        async def handler(event: Event, info: MessageInfo) -> None:
            handler_trace_ids.append(trace.get_current_span().get_span_context().trace_id)

        await backend.consume(acking(handler))
        publisher = await backend.publisher()
        with telemetry.capture_spans() as exporter:
            with trace.get_tracer("test").start_as_current_span("POST /v1/responses") as request:
                publisher.publish(sample_outcome())
            await eventually(
                lambda: bool(handler_trace_ids), timeout_s=backend.timeout_s, what="the event"
            )
            spans: dict[str, ReadableSpan] = {}

            def found() -> bool:
                for span in exporter.get_finished_spans():
                    spans.setdefault(span.name.split(" ")[0], span)
                return {"publish", "process"} <= spans.keys()

            await eventually(found, timeout_s=backend.timeout_s, what="both spans")

        request_context = request.get_span_context()
        producer, consumed = spans["publish"], spans["process"]
        assert producer.kind is trace.SpanKind.PRODUCER
        assert consumed.kind is trace.SpanKind.CONSUMER
        assert {producer.context.trace_id, consumed.context.trace_id, *handler_trace_ids} == {
            request_context.trace_id
        }
        assert producer.parent is not None and producer.parent.span_id == request_context.span_id
        assert consumed.parent is not None and consumed.parent.span_id == producer.context.span_id
        assert consumed.name == f"process {backend.topology.health_queue}"
        assert consumed.attributes is not None
        assert consumed.attributes["messaging.operation.type"] == "process"
        assert producer.attributes is not None
        assert producer.attributes["messaging.destination.name"] == backend.topology.exchange
        assert producer.attributes["messaging.rabbitmq.destination.routing_key"] == (
            OUTCOME_ROUTING_KEY
        )

    @pytest.mark.timeout(60)
    async def test_unroutable_events_are_counted_not_retried(self, backend: Backend) -> None:
        # No queue is bound to pool.changed.v1 in the declared topology.
        publisher = await backend.publisher()
        publisher.publish(
            PoolChangedV1(
                agent_id="a", change="updated", version=2, strategy=None, providers=(), actor="t"
            )
        )
        publisher.publish(sample_outcome())
        await eventually(
            lambda: _settled(publisher.stats) == 2, timeout_s=backend.timeout_s, what="settling"
        )
        assert publisher.stats.dropped == {"unroutable": 1}
        assert publisher.stats.published == 1
        assert publisher.stats.failures == 0
