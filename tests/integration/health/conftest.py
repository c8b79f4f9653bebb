from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, HeadersType

from codexpool_shared.events import BaseEvent
from codexpool_shared.messaging import OUTCOME_ROUTING_KEY, Topology, declare_topology, encode
from codexpool_shared.messaging.topology import delete_topology
from codexpool_shared.testing.infra import InfraUrls
from tests.integration.conftest import RedisTarget

Publish = Callable[[Iterable[BaseEvent | bytes]], Awaitable[None]]


async def poll_until(
    probe: Callable[[], Awaitable[bool]], *, timeout_s: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def channel(infra: InfraUrls, namespace: str) -> AsyncIterator[AbstractChannel]:
    """A channel on the real broker, with the namespace's topology declared and later deleted."""
    connection = await aio_pika.connect(
        infra.amqp_url, client_properties={"connection_name": namespace}
    )
    channel = await connection.channel()
    await declare_topology(channel, namespace)
    yield channel
    await delete_topology(channel, namespace)
    await connection.close()


@pytest.fixture
def publish(channel: AbstractChannel, namespace: str) -> Publish:
    """Publish events (or raw bodies) as the router does, with persistent delivery."""

    async def send(items: Iterable[BaseEvent | bytes]) -> None:
        exchange = await channel.get_exchange(Topology(namespace).exchange)
        for item in items:
            body = item if isinstance(item, bytes) else encode(item)
            headers: HeadersType = {}
            if isinstance(item, BaseEvent) and item.traceparent:
                headers["traceparent"] = item.traceparent
            await exchange.publish(
                aio_pika.Message(
                    body,
                    headers=headers,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=None if isinstance(item, bytes) else str(item.event_id),
                    content_type="application/json",
                ),
                routing_key=OUTCOME_ROUTING_KEY,
            )

    return send


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HealthProcess:
    """A real ``codexpool-health`` process on a free port."""

    def __init__(
        self, infra: InfraUrls, target: RedisTarget, namespace: str, log_dir: Path, **env: str
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_dir / f"health-{self.port}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "codexpool_health", "--port", str(self.port)],
            env={
                **os.environ,
                "REDIS_URL": target.url,
                "REDIS_CLUSTER": str(target.cluster).lower(),
                "AMQP_URL": infra.amqp_url,
                "CODEXPOOL_NAMESPACE": namespace,
                "OTEL_SDK_DISABLED": "true",
                **env,
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        async with httpx.AsyncClient() as client:

            async def ready() -> bool:
                if self.process.poll() is not None:
                    raise AssertionError(f"codexpool-health exited with {self.process.returncode}")
                try:
                    return (await client.get(f"{self.url}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await poll_until(ready, timeout_s=timeout_s, what="codexpool-health to be ready")

    async def metrics(self) -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{self.url}/metrics")).text

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def health_processes(
    infra: InfraUrls, redis_target: RedisTarget, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., HealthProcess]]:
    started: list[HealthProcess] = []

    def start(**env: str) -> HealthProcess:
        process = HealthProcess(infra, redis_target, namespace, tmp_path, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
