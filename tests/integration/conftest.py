from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import cast

import pytest
import redis as sync
from aio_pika.abc import AbstractChannel
from redis.asyncio import Redis

from codexpool_shared.config import InfraSettings
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import close_quietly, connect, declare_topology, delete_topology
from codexpool_shared.redis import open_redis
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.redis_cluster import PrivateRedisCluster, private_redis_cluster


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedisCluster]:
    """A private three-node Redis Cluster for this test process (started on first use)."""
    with private_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@dataclass(frozen=True)
class RedisTarget:
    """Where a test's Redis is: the shared server, or a private Redis Cluster."""

    url: str
    cluster: bool

    def settings(self, namespace: str) -> InfraSettings:
        """Settings for a client of the test's own (timeouts generous: the machine is shared)."""
        return InfraSettings.model_validate(
            {
                "REDIS_URL": self.url,
                "REDIS_CLUSTER": self.cluster,
                "CODEXPOOL_NAMESPACE": namespace,
                "CODEXPOOL_REDIS_TIMEOUT_S": 5.0,
            }
        )


@pytest.fixture(params=["server", pytest.param("cluster", marks=pytest.mark.cluster)])
def redis_target(request: pytest.FixtureRequest, infra: InfraUrls) -> RedisTarget:
    """Every integration test that uses Redis runs twice: on the shared server and on a private
    three-node Redis Cluster (``REDIS_CLUSTER``), so every store is proven on both."""
    if request.param == "cluster":
        cluster: PrivateRedisCluster = request.getfixturevalue("redis_cluster")
        return RedisTarget(cluster.url, cluster=True)
    return RedisTarget(infra.redis_url, cluster=False)


@pytest.fixture
async def redis(redis_target: RedisTarget, namespace: str) -> AsyncIterator[Redis]:
    """The services' own client (``open_redis``); the namespace's keys are deleted afterwards."""
    client = await open_redis(redis_target.settings(namespace))
    yield client
    async for key in client.scan_iter(match=Keys(namespace).pattern, count=500):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
def sync_redis(redis_target: RedisTarget, namespace: str) -> Iterator[sync.Redis]:
    """A blocking client on the test's Redis; the namespace's keys are deleted afterwards."""
    client: sync.Redis = (
        cast(sync.Redis, sync.RedisCluster.from_url(redis_target.url, socket_timeout=5))
        if redis_target.cluster
        else sync.Redis.from_url(redis_target.url, socket_timeout=5)
    )
    yield client
    for key in client.scan_iter(match=Keys(namespace).pattern, count=500):
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
