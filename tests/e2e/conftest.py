from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest

from codexpool_shared.messaging.topology import Topology, delete_topology
from codexpool_shared.testing.infra import InfraUrls


def service_env(infra: InfraUrls, namespace: str, **settings: str) -> dict[str, str]:
    """The environment of a service process on the real Redis and RabbitMQ, in ``namespace``,
    with a fresh secret key and no telemetry export; ``settings`` add or override variables."""
    return {
        "REDIS_URL": infra.redis_url,
        "AMQP_URL": infra.amqp_url,
        "CODEXPOOL_NAMESPACE": namespace,
        "CODEXPOOL_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        **settings,
    }


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@dataclass
class EventTap:
    """Every event published to the namespace's exchange during the test."""

    messages: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [body for body, _ in self.messages if body.get("type") == kind]

    async def wait_for(
        self, kind: str, count: int, timeout_s: float = 20.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.of_type(kind)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(self.of_type(kind))} {kind} events after {timeout_s} s")


@pytest.fixture
async def events(infra: InfraUrls, namespace: str) -> AsyncIterator[EventTap]:
    tap = EventTap()
    connection = await aio_pika.connect(infra.amqp_url, timeout=15)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        Topology(namespace).exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        tap.messages.append((json.loads(message.body), dict(message.headers or {})))
        await message.ack()

    await queue.consume(on_message)
    yield tap
    await delete_topology(channel, namespace)
    await connection.close()


async def poll(check: Callable[[], Awaitable[Any]], timeout_s: float = 20.0) -> Any:
    """Await ``check()`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {value!r})")
        await asyncio.sleep(0.05)
