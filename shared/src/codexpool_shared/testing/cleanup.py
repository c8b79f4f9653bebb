"""Removing what tests leave in the real Redis and RabbitMQ, by namespace."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection, Coroutine
from typing import Any

from redis.asyncio import Redis

from codexpool_shared.keys import Keys
from codexpool_shared.messaging import close_quietly, connect, delete_topology


async def delete_topologies(amqp_url: str, namespaces: Collection[str]) -> None:
    """Delete every AMQP queue and exchange of ``namespaces``.

    Deleting a queue or exchange that does not exist succeeds in RabbitMQ, so a namespace that
    never touched the broker costs one round trip.
    """
    if not namespaces:
        return
    connection = await connect(amqp_url, name="codexpool-test-cleanup", timeout_s=20)
    try:
        channel = await connection.channel()
        for namespace in namespaces:
            await delete_topology(channel, namespace)
    finally:
        await close_quietly(connection)


async def delete_namespaces(redis_url: str, amqp_url: str, namespaces: Collection[str]) -> None:
    """Delete the AMQP topology and every Redis key of ``namespaces`` (one keyspace scan)."""
    if not namespaces:
        return
    await delete_topologies(amqp_url, namespaces)
    prefixes = tuple(Keys(namespace).prefix.encode() for namespace in namespaces)
    redis = Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=10)
    try:
        doomed = [key async for key in redis.scan_iter(count=1000) if key.startswith(prefixes)]
        for start in range(0, len(doomed), 500):
            await redis.delete(*doomed[start : start + 500])
    finally:
        await redis.aclose()


def run_blocking(coroutine: Coroutine[Any, Any, None], timeout_s: float = 60) -> None:
    """Run ``coroutine`` to the end from synchronous code, even inside a running event loop."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(asyncio.wait_for(coroutine, timeout_s))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="codexpool-test-cleanup")
    thread.start()
    thread.join(timeout_s + 5)
    if errors:
        raise errors[0]
