"""The messaging behaviour suite on the real RabbitMQ (the same tests run in memory in
tests/unit/shared/test_messaging_suite.py); each test has a namespace of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from codexpool_shared.messaging import (
    OUTCOME_ROUTING_KEY,
    EventConsumer,
    EventPublisher,
    SettlingHandler,
    Topology,
)
from codexpool_shared.testing.infra import InfraUrls
from tests.messaging_suite import DeadLetter, MessagingSuite, SuitePublisher, eventually

# A broker busy with parallel test runs has been seen to stall for seconds.
SLOW_BROKER_S = 20.0


class RabbitBackend:
    """The suite's ``Backend`` on RabbitMQ, in a namespace ``amqp_channel`` declared."""

    timeout_s = 30.0

    def __init__(self, url: str, namespace: str, channel: AbstractChannel, name: str) -> None:
        self.topology = Topology(namespace)
        self._url, self._channel, self._name = url, channel, name
        self.consumers: list[EventConsumer] = []
        self.publishers: list[EventPublisher] = []

    async def publisher(self) -> SuitePublisher:
        publisher = EventPublisher(
            self._url,
            self.topology.namespace,
            name=f"{self._name} publisher",
            connect_timeout_s=SLOW_BROKER_S,
        )
        await publisher.start()
        self.publishers.append(publisher)
        return publisher

    async def consume(self, handler: SettlingHandler) -> EventConsumer:
        consumer = EventConsumer(
            self._url,
            self.topology.health_queue,
            handler,
            name=f"{self._name} consumer",
            connect_timeout_s=SLOW_BROKER_S,
        )
        await consumer.start()
        self.consumers.append(consumer)
        await eventually(lambda: consumer.consuming, timeout_s=SLOW_BROKER_S, what="consuming")
        return consumer

    async def publish_raw(self, body: bytes, *, message_id: str) -> None:
        exchange = await self._channel.get_exchange(self.topology.exchange)
        await exchange.publish(
            aio_pika.Message(body, message_id=message_id), routing_key=OUTCOME_ROUTING_KEY
        )

    async def dead_letters(self, want: int) -> list[DeadLetter]:
        dlq = await self._channel.get_queue(self.topology.health_dlq)
        got: list[DeadLetter] = []
        deadline = time.monotonic() + self.timeout_s
        while len(got) < want:
            message = await dlq.get(no_ack=True, fail=False)
            if message is not None:
                deaths = message.headers.get("x-death")
                assert isinstance(deaths, list) and deaths, message.headers
                first = deaths[0]
                assert isinstance(first, dict)
                reason = first["reason"]
                text = reason.decode() if isinstance(reason, bytes) else str(reason)
                got.append(DeadLetter(message.message_id, text))
            elif time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} of {want} dead letters after {self.timeout_s} s")
            else:
                await asyncio.sleep(0.05)
        return got

    async def close(self) -> None:
        for publisher in self.publishers:
            await publisher.close(deadline_s=2)
        for consumer in self.consumers:
            await consumer.stop(timeout_s=5)


class TestRabbitMQ(MessagingSuite):
    @pytest.fixture
    async def backend(
        self,
        infra: InfraUrls,
        namespace: str,
        amqp_channel: AbstractChannel,
        request: pytest.FixtureRequest,
    ) -> AsyncIterator[RabbitBackend]:
        backend = RabbitBackend(infra.amqp_url, namespace, amqp_channel, request.node.nodeid)
        yield backend
        await backend.close()
