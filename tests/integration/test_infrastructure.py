"""The integration tier really reaches Redis and RabbitMQ: their versions, as they report them."""

from __future__ import annotations

import re

from redis.asyncio import Redis

from codexpool_shared.messaging import connect, server_version
from codexpool_shared.testing.infra import InfraUrls

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)")


async def test_rabbitmq_server_version(infra: InfraUrls) -> None:
    connection = await connect(infra.amqp_url, name="test_rabbitmq_server_version")
    try:
        version = server_version(connection)
        assert connection.transport is not None
        product = connection.transport.connection.server_properties.get("product")
    finally:
        await connection.close()
    match = _VERSION.match(version)
    assert match, version
    assert (int(match[1]), int(match[2])) >= (3, 10), f"RabbitMQ {version} lacks quorum DLX"
    assert product in ("RabbitMQ", b"RabbitMQ")


async def test_redis_server_version(redis: Redis) -> None:
    info = await redis.info("server")
    version = str(info["redis_version"])
    match = _VERSION.match(version)
    assert match, version
    assert int(match[1]) >= 5, f"Redis {version} is too old"
