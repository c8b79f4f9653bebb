"""Health service throughput and consumer lag, against the real Redis and RabbitMQ (``make bench``).

1. Throughput: N outcome events wait in the queue; one ``codexpool-health`` process starts and
   the clock runs from its first applied event to its last (events applied per second).
2. Lag: events published at 1,000/s for 30 s, each stamped ``occurred_at`` when published; the
   p99 of ``now - occurred_at`` when its aggregates are written, from the process's own
   ``codexpool_health_event_lag_seconds`` histogram (interpolated inside its bucket).

    uv run python bench/health_throughput.py [--events 50000] [--rate 1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time

import aio_pika
import httpx

from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.messaging import (
    OUTCOME_ROUTING_KEY,
    Topology,
    connect,
    declare_topology,
    encode,
)
from codexpool_shared.testing.cleanup import delete_namespaces
from codexpool_shared.testing.infra import InfraUrls, infrastructure, unique_namespace
from codexpool_shared.testing.measure import metric
from codexpool_shared.testing.messaging import random_outcome

PROVIDERS = ["acct-1", "acct-2", "acct-3"]
AGENTS = ["agent-1", "agent-2", "agent-3"]


def histogram_quantile(text: str, name: str, q: float) -> float:
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float(le), float(line.split()[-1])))
    total = buckets[-1][1]
    rank = q * total
    previous_bound = previous_count = 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            share = (rank - previous_count) / (count - previous_count)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, count
    return previous_bound


class Health:
    def __init__(self, infra: InfraUrls, namespace: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {
            **os.environ,
            "REDIS_URL": infra.redis_url,
            "AMQP_URL": infra.amqp_url,
            "CODEXPOOL_NAMESPACE": namespace,
            "OTEL_SDK_DISABLED": "true",
        }
        command = [sys.executable, "-m", "codexpool_health", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}")

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if (await self.client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("codexpool-health did not become ready")

    def cpu_seconds(self) -> float:
        fields = open(f"/proc/{self.process.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def metrics(self) -> str:
        return (await self.client.get("/metrics")).text

    async def applied(self) -> float:
        return metric(
            await self.metrics(), 'codexpool_health_events_processed_total{result="applied"}'
        )

    async def close(self) -> None:
        await self.client.aclose()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(20)


async def publish(exchange: aio_pika.abc.AbstractExchange, events: list[RequestOutcomeV1]) -> None:
    await asyncio.gather(
        *(
            exchange.publish(
                aio_pika.Message(encode(e), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=OUTCOME_ROUTING_KEY,
            )
            for e in events
        )
    )


async def throughput(infra: InfraUrls, channel: aio_pika.abc.AbstractChannel, count: int) -> None:
    namespace = unique_namespace("bench")
    await declare_topology(channel, namespace)
    exchange = await channel.get_exchange(Topology(namespace).exchange)
    rng = random.Random(1)
    for start in range(0, count, 1000):
        await publish(
            exchange,
            [random_outcome(rng, PROVIDERS, AGENTS) for _ in range(min(1000, count - start))],
        )
    health = Health(infra, namespace)
    try:
        await health.ready()
        while await health.applied() == 0:
            await asyncio.sleep(0.001)
        started, cpu = time.perf_counter(), health.cpu_seconds()
        first = await health.applied()
        # Each poll is a /metrics scrape in the health process: every 10 ms they took a fifth
        # of its CPU (Prometheus scrapes every 15 s or so); 50 ms costs about 1 % of the clock.
        while (applied := await health.applied()) < count:
            await asyncio.sleep(0.05)
        elapsed, cpu = time.perf_counter() - started, health.cpu_seconds() - cpu
        print(
            f"throughput: {count} events, {(applied - first) / elapsed:,.0f} events/s applied "
            f"({(applied - first) / cpu:,.0f} per CPU second of the health process; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
    finally:
        await health.close()
        await delete_namespaces(infra.redis_url, infra.amqp_url, [namespace])


async def lag(
    infra: InfraUrls, channel: aio_pika.abc.AbstractChannel, rate: int, seconds: int
) -> None:
    namespace = unique_namespace("bench")
    await declare_topology(channel, namespace)
    exchange = await channel.get_exchange(Topology(namespace).exchange)
    health = Health(infra, namespace)
    rng = random.Random(2)
    try:
        await health.ready()
        tick = 0.01
        per_tick = rate * tick
        sent = 0
        confirms: list[float] = []
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(elapsed * rate + per_tick)
            before = time.perf_counter()
            await publish(
                exchange, [random_outcome(rng, PROVIDERS, AGENTS) for _ in range(due - sent)]
            )
            confirms += [time.perf_counter() - before] * (due - sent)
            sent = due
            await asyncio.sleep(max(0.0, started + (sent / rate) - time.perf_counter()))
        while await health.applied() < sent:
            await asyncio.sleep(0.05)
        text = await health.metrics()
        name = "codexpool_health_event_lag_seconds"
        p50 = histogram_quantile(text, name, 0.5) * 1000
        p99 = histogram_quantile(text, name, 0.99) * 1000
        confirms.sort()
        print(
            f"lag at {rate}/s for {seconds} s ({sent} events): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (interpolated in histogram buckets); "
            f"of which publisher confirms alone: p50 {confirms[len(confirms) // 2] * 1000:.1f} ms, "
            f"p99 {confirms[int(len(confirms) * 0.99)] * 1000:.1f} ms"
        )
    finally:
        await health.close()
        await delete_namespaces(infra.redis_url, infra.amqp_url, [namespace])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    with infrastructure() as infra:
        # Bounded: a broker that accepts TCP but never answers fails the bench, not hangs it.
        connection = await connect(infra.amqp_url, name="health-bench")
        channel = await connection.channel(publisher_confirms=True)
        try:
            await throughput(infra, channel, args.events)
            await lag(infra, channel, args.rate, args.seconds)
        finally:
            await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
