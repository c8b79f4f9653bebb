"""The fleet view against real Redis and RabbitMQ: the health app exports what the store holds
on its tick, removes the series of what is gone, and reads the outcome queue's depth."""

from __future__ import annotations

import time

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from redis.asyncio import Redis

from codexpool_health.fleet import QueueDepth
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import Topology
from codexpool_shared.store import (
    QuotaSnapshot,
    QuotaWindow,
    create_agent,
    delete_agent,
    extend_cooldown,
    put_pool,
    register_provider,
    remove_member,
    set_provider_status,
    write_quota,
)
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.conftest import RedisTarget
from tests.integration.health.conftest import poll_until
from tests.integration.health.test_service import running, sample
from tests.integration.router.helpers import auth_json, keyring


async def test_the_health_service_exports_the_fleet_on_its_tick(
    infra: InfraUrls,
    redis_target: RedisTarget,
    namespace: str,
    redis: Redis,
    channel: AbstractChannel,
) -> None:
    keys, ring = Keys(namespace), keyring()
    now_ms = time.time_ns() // 1_000_000
    for n in (1, 2, 3):
        await register_provider(redis, keys, ring, f"p{n}", auth_json(f"acc-{n}"))
    await create_agent(redis, keys, "agent-a")
    await create_agent(redis, keys, "agent-b")
    await put_pool(redis, keys, "agent-a", "round-robin", ["p1", "p2", "p3"])
    await put_pool(redis, keys, "agent-b", "primary-first", ["p2"])
    await extend_cooldown(redis, keys, "p2", now_ms + 3_600_000, "usage_limit", now_ms=now_ms)
    await set_provider_status(redis, keys, "p3", "needs_reauth")
    reset_at = now_ms // 1000 + 7200
    snapshot = QuotaSnapshot(
        primary=QuotaWindow(used_percent=97.0, window_minutes=300, resets_at=reset_at),
        observed_at_ms=now_ms,
    )
    await write_quota(redis, keys, "p2", snapshot)
    health_queue = Topology(namespace).health_queue

    async with running(
        infra, redis_target, namespace, InMemoryPublisher(namespace), HEALTH_RESCORE_INTERVAL_S=0.2
    ) as state:
        registry = state.infra.registry

        async def shown() -> bool:
            return (
                registry.get_sample_value("codexpool_health_pool_members", {"agent": "agent-a"})
                is not None
                and registry.get_sample_value(
                    "codexpool_health_queue_messages", {"queue": health_queue}
                )
                is not None
            )

        await poll_until(shown, what="the fleet gauges")
        assert sample(registry, "codexpool_health_pool_members", agent="agent-a") == 3
        assert sample(registry, "codexpool_health_pool_available_members", agent="agent-a") == 1
        assert sample(registry, "codexpool_health_pool_members", agent="agent-b") == 1
        assert sample(registry, "codexpool_health_pool_available_members", agent="agent-b") == 0
        for provider, state_name in (
            ("p1", "closed"),
            ("p2", "cooling_down"),
            ("p3", "needs_reauth"),
        ):
            labels = {"provider": provider, "state": state_name}
            assert registry.get_sample_value("codexpool_health_provider_state", labels) == 1
        quota = {"provider": "p2", "window": "primary"}
        assert registry.get_sample_value("codexpool_health_quota_used_percent", quota) == 97.0
        left = registry.get_sample_value("codexpool_health_quota_reset_seconds", quota)
        assert left is not None and 7000 < left <= 7200
        assert sample(registry, "codexpool_health_queue_messages", queue=health_queue) == 0

        await delete_agent(redis, keys, "agent-b")
        await remove_member(redis, keys, "agent-a", "p3")

        async def gone() -> bool:
            return (
                registry.get_sample_value("codexpool_health_pool_members", {"agent": "agent-b"})
                is None
                and sample(registry, "codexpool_health_pool_members", agent="agent-a") == 2
            )

        await poll_until(gone, what="agent-b's series to go and agent-a's pool to shrink")


async def test_queue_depth_counts_ready_messages_and_survives_a_missing_queue(
    infra: InfraUrls, namespace: str, channel: AbstractChannel
) -> None:
    topology = Topology(namespace)
    missing = f"{namespace}.not-declared"
    exchange = await channel.get_exchange(topology.dlx)
    for n in range(3):
        # The DLX routes by the name of the queue a dead letter left: straight into the DLQ.
        await exchange.publish(aio_pika.Message(b"%d" % n), routing_key=topology.health_queue)
    depth = QueueDepth(infra.amqp_url, (topology.health_dlq,), name=namespace)
    broken = QueueDepth(infra.amqp_url, (missing,), name=namespace)
    try:

        async def three() -> bool:
            return await depth.read() == {topology.health_dlq: 3}

        await poll_until(three, what="three ready messages in the DLQ")
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await broken.read()
        await channel.declare_queue(missing)
        assert await broken.read() == {missing: 0}
    finally:
        await depth.close()
        await broken.close()
        await channel.queue_delete(missing)  # not part of the topology the fixture deletes
        await channel.queue_delete(missing)
