"""EventConsumer's settle rules and lifecycle, driven with aiormq deliveries (no broker)."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable
from typing import Any, cast

import pytest
from aiormq.abc import AbstractChannel, DeliveredMessage
from opentelemetry import propagate, trace
from pamqp import commands as spec
from pamqp.header import ContentHeader
from prometheus_client import CollectorRegistry

from codexpool_shared import telemetry
from codexpool_shared.events import Event
from codexpool_shared.messaging import (
    ConsumerState,
    ConsumerStateError,
    Delivery,
    EventConsumer,
    MessageInfo,
    acking,
    encode,
)
from codexpool_shared.testing.messaging import sample_outcome

pytestmark = pytest.mark.timeout(20)

QUEUE = "unit.health.outcomes"
_tags = itertools.count(1)


class FakeChannel:
    """Records the settle frames aiormq would send."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.frames.append(f"ack {delivery_tag} multiple={multiple}")

    async def basic_nack(self, delivery_tag: int, requeue: bool = True) -> None:
        self.frames.append(f"nack {delivery_tag} requeue={requeue}")

    async def basic_reject(self, delivery_tag: int, *, requeue: bool = True) -> None:
        self.frames.append(f"reject {delivery_tag} requeue={requeue}")


def delivered(
    channel: FakeChannel,
    body: bytes,
    *,
    headers: dict[str, Any] | None = None,
    message_id: str = "m-1",
    redelivered: bool = False,
) -> DeliveredMessage:
    return DeliveredMessage(
        delivery=spec.Basic.Deliver(
            consumer_tag="ctag",
            delivery_tag=next(_tags),
            redelivered=redelivered,
            exchange="unit.events",
            routing_key="request.outcome.v1",
        ),
        header=ContentHeader(
            properties=spec.Basic.Properties(headers=headers or {}, message_id=message_id)
        ),
        body=body,
        channel=cast(AbstractChannel, channel),
    )


def _consumer(handler: Any, **kw: Any) -> EventConsumer:
    return EventConsumer("amqp://unused/", QUEUE, handler, **kw)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


def _tag(message: DeliveredMessage) -> int:
    return message.delivery_tag or 0


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not check():
            await asyncio.sleep(0.002)


async def test_acking_acks_a_handled_event_and_counts_it() -> None:
    seen: list[tuple[Event, MessageInfo]] = []

    async def handler(event: Event, info: MessageInfo) -> None:
        seen.append((event, info))

    registry = CollectorRegistry()
    consumer = _consumer(acking(handler), registry=registry)
    channel, event = FakeChannel(), sample_outcome()
    message = delivered(channel, encode(event), headers={"x-delivery-count": 2}, redelivered=True)
    await consumer.on_message(message)

    assert channel.frames == [f"ack {_tag(message)} multiple=False"]
    assert seen == [
        (event, MessageInfo("m-1", "unit.events", "request.outcome.v1", True, delivery_count=2))
    ]
    assert consumer.stats.results == {"applied": 1}
    labels = {"queue": QUEUE, "result": "applied"}
    assert registry.get_sample_value("codexpool_events_consumed_total", labels) == 1


async def test_malformed_message_is_rejected_without_requeue_and_counted() -> None:
    async def handler(event: Event, delivery: Delivery) -> None:
        raise AssertionError("never called")

    malformed: list[str] = []
    consumer = _consumer(handler, on_malformed=lambda error: malformed.append(error.reason))
    channel = FakeChannel()
    message = delivered(channel, b'{"type": "request.outcome.v7"}')
    await consumer.on_message(message)
    assert channel.frames == [f"reject {_tag(message)} requeue=False"]
    assert consumer.stats.results == {"malformed": 1}
    assert malformed == ["malformed"]


async def test_acking_requeues_a_failure_after_a_pause_growing_with_the_delivery_count() -> None:
    async def handler(event: Event, info: MessageInfo) -> None:
        raise ConnectionError("redis is down")

    consumer = _consumer(acking(handler, retry_delay_s=(0.05, 0.08)))
    channel = FakeChannel()
    first = delivered(channel, encode(sample_outcome()))
    again = delivered(channel, encode(sample_outcome()), headers={"x-delivery-count": 3})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await consumer.on_message(first)
    waited_first = loop.time() - started
    started = loop.time()
    await consumer.on_message(again)
    waited_again = loop.time() - started

    assert channel.frames == [
        f"nack {_tag(first)} requeue=True",
        f"nack {_tag(again)} requeue=True",
    ]
    assert 0.05 <= waited_first < waited_again  # 0.05 * 2**3 is capped at 0.08
    assert waited_again >= 0.08
    assert consumer.stats.results == {"failed": 2}


async def test_a_settling_handler_may_ack_many_deliveries_with_one_frame_later() -> None:
    held: list[Delivery] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        held.append(delivery)

    consumer = _consumer(handler)
    channel = FakeChannel()
    messages = [delivered(channel, encode(sample_outcome())) for _ in range(3)]
    for message in messages:
        await consumer.on_message(message)
    assert channel.frames == []  # handled, not settled: that is the handler's business
    assert consumer.stats.results == {"applied": 3}
    assert [d.body for d in held] == [m.body for m in messages]
    assert all(d.channel is cast(AbstractChannel, channel) for d in held)

    await held[-1].ack(multiple=True)
    assert channel.frames == [f"ack {_tag(messages[-1])} multiple=True"]


async def test_a_batching_handler_gets_no_span_per_delivery_but_the_producer_headers() -> None:
    telemetry.configure("codexpool-unit")
    with trace.get_tracer("test").start_as_current_span("publish") as producer:
        carrier: dict[str, Any] = {}
        propagate.inject(carrier)
    seen: list[tuple[trace.Span, object]] = []

    async def handler(event: Event, delivery: Delivery) -> None:
        seen.append((trace.get_current_span(), delivery.headers))
        await delivery.ack()

    channel = FakeChannel()
    with telemetry.capture_spans() as exporter:
        for span_per_delivery in (False, True):
            consumer = _consumer(handler, span_per_delivery=span_per_delivery)
            await consumer.on_message(delivered(channel, encode(sample_outcome()), headers=carrier))
    (alone, _), (traced, _) = seen
    assert not alone.get_span_context().is_valid
    assert seen[0][1] == carrier
    assert traced.get_span_context().trace_id == producer.get_span_context().trace_id
    assert [s.name for s in exporter.get_finished_spans()] == [f"process {QUEUE}"]


def test_constructor_refuses_bad_settings() -> None:
    async def handler(event: Event, delivery: Delivery) -> None:
        pass

    with pytest.raises(ValueError, match="prefetch"):
        EventConsumer("amqp://unused/", "q", handler, prefetch=1000)
    assert EventConsumer("amqp://unused/", "q", handler).state is ConsumerState.NEW


async def test_start_returns_at_once_without_a_broker_and_stop_cancels_late_handlers() -> None:
    release = asyncio.Event()

    async def handler(event: Event, delivery: Delivery) -> None:
        await release.wait()

    consumer = EventConsumer(
        _closed_port_url(), QUEUE, handler, connect_timeout_s=1.0, backoff_s=(0.01, 0.05)
    )
    async with asyncio.timeout(0.5):
        await consumer.start()
    started = consumer.state
    assert started is ConsumerState.RUNNING
    assert not consumer.consuming
    with pytest.raises(ConsumerStateError):
        await consumer.start()

    # As aiormq runs a delivery: in a task of its own.
    stuck = asyncio.create_task(
        consumer.on_message(delivered(FakeChannel(), encode(sample_outcome())))
    )
    await eventually(lambda: bool(consumer._tasks))
    await consumer.stop(timeout_s=0.05)
    assert stuck.cancelled()
    assert consumer.state is ConsumerState.STOPPED


async def test_stop_ends_a_supervisor_that_swallowed_its_cancellation() -> None:
    # As asyncio.wait_for could before Python 3.12 (python/cpython#86296), inside aiormq's calls.
    swallowed: list[bool] = []

    async def supervise() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.append(True)
        await asyncio.Event().wait()

    async def handler(event: Event, delivery: Delivery) -> None:
        pass

    consumer = _consumer(handler)
    consumer._supervise = supervise  # type: ignore[method-assign]
    await consumer.start()
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await consumer.stop()
    assert swallowed == [True]
    assert consumer.state is ConsumerState.STOPPED
