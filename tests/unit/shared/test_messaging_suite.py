"""The messaging behaviour suite on the in-memory broker (the same tests run on RabbitMQ in
tests/integration/test_messaging_suite.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from codexpool_shared.messaging import EventConsumer, SettlingHandler, Topology
from codexpool_shared.testing.broker import InMemoryBroker
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.messaging_suite import DeadLetter, MessagingSuite, SuitePublisher, eventually


class MemoryBackend:
    """The suite's ``Backend`` on ``InMemoryBroker``."""

    timeout_s = 5.0

    def __init__(self) -> None:
        self.broker = InMemoryBroker("unit")
        self.topology: Topology = self.broker.topology
        self.consumers: list[EventConsumer] = []
        self.publishers: list[InMemoryPublisher] = []

    async def publisher(self) -> SuitePublisher:
        publisher = InMemoryPublisher(broker=self.broker)
        await publisher.start()
        self.publishers.append(publisher)
        return publisher

    async def consume(self, handler: SettlingHandler) -> EventConsumer:
        # Never started: the broker feeds it deliveries instead of an AMQP connection.
        consumer = EventConsumer("amqp://memory/", self.topology.health_queue, handler)
        self.broker.consume(self.topology.health_queue, consumer.on_message)
        self.consumers.append(consumer)
        return consumer

    async def publish_raw(self, body: bytes, *, message_id: str) -> None:
        assert self.broker.publish_raw(body, "request.outcome.v1", message_id=message_id)

    async def dead_letters(self, want: int) -> list[DeadLetter]:
        dlq = self.broker.queues[self.topology.health_dlq]
        await eventually(lambda: len(dlq.ready) >= want, timeout_s=self.timeout_s, what="DLQ")
        taken = [dlq.get() for _ in range(want)]
        return [DeadLetter(m.message_id, m.death_reason or "") for m in taken if m is not None]

    async def close(self) -> None:
        if self.consumers:
            await self.broker.cancel(self.topology.health_queue)
        for consumer in self.consumers:
            await consumer.stop()
        for publisher in self.publishers:
            await publisher.close()


class TestInMemoryBroker(MessagingSuite):
    @pytest.fixture
    async def backend(self) -> AsyncIterator[MemoryBackend]:
        backend = MemoryBackend()
        yield backend
        await backend.close()
