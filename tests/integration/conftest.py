from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from aio_pika.abc import AbstractChannel

from codexpool_shared.messaging import close_quietly, connect, declare_topology, delete_topology
from codexpool_shared.testing.infra import InfraUrls


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def sync_redis(infra: InfraUrls, namespace: str) -> Iterator[redis.Redis]:
    """A blocking client on the real Redis; the namespace's keys are deleted afterwards."""
    client = redis.Redis.from_url(infra.redis_url, socket_timeout=5)
    yield client
    for key in client.scan_iter(match=f"{namespace}:*", count=500):
        client.delete(key)
    client.close()


@pytest.fixture
async def amqp_channel(
    infra: InfraUrls, namespace: str, request: pytest.FixtureRequest
) -> AsyncIterator[AbstractChannel]:
    """A channel on the real broker (its connection named after the test), with the namespace's
    topology declared; the topology is deleted afterwards, on a fresh channel in case the test
    broke this one.
    """
    # Generous: a broker busy with parallel test runs has been seen to stall for seconds.
    connection = await connect(infra.amqp_url, name=request.node.nodeid, timeout_s=30)
    channel = await connection.channel()
    await declare_topology(channel, namespace)
    yield channel
    cleanup = await connection.channel()
    await delete_topology(cleanup, namespace)
    await close_quietly(connection)
