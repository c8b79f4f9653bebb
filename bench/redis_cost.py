"""What one routed request costs Redis, router and health separately, and the services' memory.

    uv run python bench/redis_cost.py [--seconds 20] [--sizes 3,6,12] [--connections 32]
                                      [--memory-seconds 60]

Everything runs against a private ``redis-server`` this bench starts (its statistics are reset
with ``CONFIG RESETSTAT``, which the shared server must never see) and the shared RabbitMQ, in a
namespace of its own. codex-sim serves 12 accounts at zero latency and zero quota cost.

1. Redis cost, for each pool size (round-robin pools of 3, 6 and 12 members): ``--seconds`` of
   load through one router worker while no health service runs (the outcome events wait in the
   queue), then one health service applies that backlog. Around each phase: ``INFO cpu``
   (``used_cpu_sys + used_cpu_user`` of the Redis server) and ``INFO commandstats``, so the router's
   and the health service's costs are separate. Reported: Redis CPU microseconds per routed
   request (and per applied event), the per-command calls per request and ``usec_per_call``, and
   the ceiling it implies: routed requests per second one Redis primary's core can serve.
2. Memory (``--memory-seconds``, 0 to skip): router and health together under sustained load
   (pool of 3), the resident set size (``VmRSS``) of each at the start (after a warm-up) and
   the end, and its peak in between. The issue's 10-minute check:
   ``uv run python bench/redis_cost.py --sizes 3 --seconds 5 --memory-seconds 600``.

The background work of each service during its phase (the router's pollers, the health service's
fleet gauges and quota history) is counted with it, as it would be in production.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx
import orjson
import uvloop
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, put_pool, register_provider
from codexpool_shared.testing.cleanup import delete_namespaces
from codexpool_shared.testing.faultproxy import FaultProxy
from codexpool_shared.testing.measure import cpu_seconds, metric, redis_cpu_seconds, router_env
from codexpool_shared.testing.processes import Service, run_service
from codexpool_shared.testing.redis_server import private_redis

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ACCOUNTS = 12
BODY = orjson.dumps({"model": "gpt-5-codex", "input": "hi", "stream": True, "store": False})
APPLIED = 'codexpool_health_events_processed_total{result="applied"}'


@dataclass(frozen=True, slots=True)
class Usage:
    """What Redis spent in one phase."""

    cpu_us: float
    commands: dict[str, tuple[int, float]]  # command -> (calls, usec_per_call)


async def redis_usage(redis: Redis) -> tuple[float, dict[str, tuple[int, float]]]:
    cpu_us = await redis_cpu_seconds(redis) * 1e6
    stats = await redis.info("commandstats")
    commands = {
        name.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec_per_call"]))
        for name, v in stats.items()
    }
    return cpu_us, commands


async def measured(redis: Redis, phase: Callable[[], Awaitable[None]]) -> Usage:
    """Reset the command statistics, run ``phase``, return what Redis spent meanwhile."""
    await redis.config_resetstat()
    before, _ = await redis_usage(redis)
    await phase()
    after, commands = await redis_usage(redis)
    # The two INFO calls of the measurement itself are not the services' cost.
    commands.pop("info", None)
    commands.pop("config|resetstat", None)
    return Usage(after - before, commands)


async def wait_applied(health: Service, count: int, timeout_s: float = 180.0) -> None:
    """Until this health process applied ``count`` events (its counter starts at zero)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            text = (await client.get(health.url + "/metrics")).text
            if metric(text, APPLIED) >= count:
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the health service did not apply {count} events in {timeout_s} s")


async def settle(router: Service) -> None:
    """Until RabbitMQ confirmed every outcome event the router accepted."""
    async with httpx.AsyncClient() as client:
        while True:
            text = (await client.get(router.url + "/metrics")).text
            if metric(text, "codexpool_event_buffer_depth") == 0:
                return
            await asyncio.sleep(0.01)


@dataclass(frozen=True, slots=True)
class Route:
    """Streamed ``POST /v1/responses`` through the router for one agent."""

    url: str
    headers: dict[str, str]


async def drive(route: Route, connections: int, seconds: float) -> int:
    """Complete streamed answers through the router in ``seconds`` at ``connections``."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            async with session.post(route.url, data=BODY, headers=route.headers) as resp:
                body = await resp.read()
            if resp.status != 200 or b"response.completed" not in body:
                raise RuntimeError(f"a routed request failed: HTTP {resp.status}")
            done += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    return done


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match
    return int(match.group(1)) / 1024


def print_usage(label: str, usage: Usage, count: int, unit: str) -> None:
    """The CPU figure, then every command by its share. Redis counts the commands a script calls
    as calls of their own too, and its ``usec_per_call`` is elapsed time (a script's includes
    theirs; on a busy machine both include time the server waited for a core): the breakdown
    says where the work goes, the CPU figure what it costs."""
    print(f"  {label}: {usage.cpu_us / count:6.1f} us of Redis CPU per {unit}")
    ranked = sorted(usage.commands.items(), key=lambda kv: -kv[1][0] * kv[1][1])
    for name, (calls, per_call) in ranked:
        if calls / count >= 0.01:
            print(
                f"    {name:<16} {calls / count:6.2f} calls/{unit}  {per_call:6.2f} us/call  "
                f"{calls * per_call / count:6.1f} us/{unit}"
            )


async def run(args: argparse.Namespace) -> None:
    namespace = "bench-rcost-" + uuid.uuid4().hex[:8]
    secret = base64.b64encode(os.urandom(32)).decode()
    tmp = Path(tempfile.mkdtemp(prefix="redis-cost-"))
    sizes = [int(s) for s in args.sizes.split(",")]
    sim_args = ["--accounts", str(ACCOUNTS), "--write-auth", str(tmp / "auth"), "--primary-cost",
                "0", "--secondary-cost", "0", "--record-limit", "100"]  # fmt: skip
    with (
        private_redis(tmp / "redis") as store,
        run_service("codexpool_sim", env={}, log_dir=tmp, args=sim_args, name="sim") as sim,
    ):
        redis = Redis.from_url(store.url)
        keys = Keys(namespace)
        ring = Keyring.from_secret(secret)
        for n in range(1, ACCOUNTS + 1):
            doc = orjson.loads((tmp / "auth" / f"account-{n}.auth.json").read_bytes())
            await register_provider(redis, keys, ring, f"account-{n}", doc)
        agent_keys = {}
        for size in sorted(
            set(sizes) | ({3} if args.memory_seconds or args.outage_seconds else set())
        ):
            _, agent_keys[size] = await create_agent(redis, keys, f"pool-{size}")
            members = [f"account-{n}" for n in range(1, size + 1)]
            await put_pool(redis, keys, f"pool-{size}", "round-robin", members)
        env = router_env(store.url, AMQP_URL, namespace, secret, sim.url)
        try:
            with run_service("codexpool_router", env=env, log_dir=tmp, name="router") as router:

                def request(size: int) -> Route:
                    headers = {
                        "Authorization": f"Bearer {agent_keys[size]}",
                        "Content-Type": "application/json",
                    }
                    return Route(router.url + "/v1/responses", headers)

                # Warm-up, and the health service's first start (it declares nothing the router
                # has not: the router's publisher declares the queues).
                warm = await drive(request(sizes[0]), 4, 1.0)
                with run_service("codexpool_health", env=env, log_dir=tmp, name="health") as h:
                    await wait_applied(h, warm)
                summary = []
                for size in sizes:
                    done = 0

                    async def load(size: int = size) -> None:
                        nonlocal done
                        done = await drive(request(size), args.connections, args.seconds)
                        await settle(router)

                    cpu = cpu_seconds(router.process.pid)
                    routed = await measured(redis, load)
                    router_cpu = cpu_seconds(router.process.pid) - cpu

                    async def apply(count: int = done) -> None:
                        with run_service(
                            "codexpool_health", env=env, log_dir=tmp, name="health"
                        ) as h:
                            await wait_applied(h, count)

                    healthy = await measured(redis, apply)
                    print(
                        f"pool of {size}: {done} routed requests in {args.seconds:.0f} s "
                        f"({done / args.seconds:,.0f}/s, {done / router_cpu:,.0f} per router "
                        "CPU-second)"
                    )
                    print_usage("router", routed, done, "request")
                    print_usage("health", healthy, done, "event")
                    total = (routed.cpu_us + healthy.cpu_us) / done
                    print(
                        f"  together: {total:.1f} us per routed request: one Redis primary's "
                        f"core tops out near {1e6 / total:,.0f} routed requests/s"
                    )
                    summary.append((size, routed.cpu_us / done, healthy.cpu_us / done, total))
                print(
                    "\n| pool members | router us/request | health us/event | together | ceiling |"
                )
                print("|---|---|---|---|---|")
                for size, r, h_, t in summary:
                    print(f"| {size} | {r:.1f} | {h_:.1f} | {t:.1f} | {1e6 / t:,.0f} req/s |")
                if args.memory_seconds:
                    await memory(router, env, tmp, request(3), args)
                if args.outage_seconds:
                    await outage(env, tmp, request(3).headers, args)
        finally:
            await redis.aclose()
            await delete_namespaces(store.url, AMQP_URL, [namespace])


async def memory(
    router: Service, env: dict[str, str], tmp: Path, route: Route, args: argparse.Namespace
) -> None:
    """RSS of the router and the health service at the start and end of a sustained load.

    Beside each RSS sample, the deepest the router's event buffer got since the one before
    (``/metrics`` read every 0.1 s): freed memory stays with the allocator, so the router's RSS
    keeps the high-water mark of its buffer, which grows when RabbitMQ is slow to confirm.
    """
    with run_service("codexpool_health", env=env, log_dir=tmp, name="health-memory") as health:
        await drive(route, args.connections, 5.0)  # warm-up: pools, caches
        pids = {"router": router.process.pid, "health": health.process.pid}
        start = {name: rss_mib(pid) for name, pid in pids.items()}
        samples: dict[str, list[float]] = {name: [] for name in pids}  # every 10 s
        depths: list[float] = []  # the buffer's peak in each 10 s
        peak = 0.0

        async def watch() -> None:
            nonlocal peak
            async with httpx.AsyncClient() as client:
                while True:
                    text = (await client.get(router.url + "/metrics")).text
                    peak = max(peak, metric(text, "codexpool_event_buffer_depth"))
                    await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        done = 0
        stop_at = time.monotonic() + args.memory_seconds
        try:
            while (left := stop_at - time.monotonic()) > 0:
                done += await drive(route, args.connections, min(10.0, left))
                for name, pid in pids.items():
                    samples[name].append(rss_mib(pid))
                depths.append(peak)
                peak = 0.0
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        end = {name: rss_mib(pid) for name, pid in pids.items()}
    print(
        f"\nmemory: {done} routed requests in {args.memory_seconds:.0f} s "
        f"({done / args.memory_seconds:,.0f}/s), router and health both live"
    )
    # Growth that levels off (allocator, caches) from growth that goes on (a leak).
    step = max(1, len(depths) // 10)
    for name in pids:
        print(
            f"  {name:<7} RSS start {start[name]:6.1f} MiB, end {end[name]:6.1f} MiB "
            f"({end[name] - start[name]:+.1f}), peak {max(samples[name]):6.1f} MiB"
        )
        path = " ".join(f"{v:.1f}" for v in samples[name][step - 1 :: step])
        print(f"          every {step * 10} s: {path}")
    windows = " ".join(f"{max(depths[i : i + step]):.0f}" for i in range(0, len(depths), step))
    print(f"  router's event buffer, deepest in each {step * 10} s: {windows}")


async def outage(
    env: dict[str, str], tmp: Path, headers: dict[str, str], args: argparse.Namespace
) -> None:
    """The router's RSS and event buffer while RabbitMQ is unreachable under load.

    A second router reaches RabbitMQ through a fault proxy that resets every connection for
    ``--outage-seconds``: its publisher buffers up to its bound (10,000 events), then counts
    drops; RSS must level off with the buffer. Then the proxy lets traffic through again and
    the buffer drains.
    """
    broker = urlsplit(AMQP_URL)
    async with FaultProxy(broker.hostname or "127.0.0.1", broker.port or 5672) as proxy:
        cut_env = {**env, "AMQP_URL": proxy.url_for(AMQP_URL)}
        with run_service("codexpool_router", env=cut_env, log_dir=tmp, name="router-outage") as r:
            outage_route = Route(r.url + "/v1/responses", headers)
            await drive(outage_route, args.connections, 5.0)
            await settle(r)
            pid = r.process.pid
            before = rss_mib(pid)
            proxy.reset()
            samples, done, depth = [], 0, 0.0
            stop_at = time.monotonic() + args.outage_seconds
            while (left := stop_at - time.monotonic()) > 0:
                done += await drive(outage_route, args.connections, min(5.0, left))
                async with httpx.AsyncClient() as client:
                    text = (await client.get(r.url + "/metrics")).text
                depth = max(depth, metric(text, "codexpool_event_buffer_depth"))
                samples.append(rss_mib(pid))
            dropped = metric(text, 'codexpool_events_dropped_total{reason="buffer_full"}')
            during = rss_mib(pid)
            proxy.pass_through()
            healed = time.monotonic()
            await settle(r)
            drained_s = time.monotonic() - healed
    print(
        f"\nRabbitMQ outage: {done} routed requests in {args.outage_seconds:.0f} s without the "
        f"broker; buffer peak {depth:,.0f} events (bound 10,000), {dropped:,.0f} dropped"
    )
    print(
        f"  router RSS {before:.1f} MiB before, {during:.1f} MiB at the end "
        f"({during - before:+.1f}), every 5 s: {' '.join(f'{v:.1f}' for v in samples)}"
    )
    print(f"  after the broker came back the buffer drained in {drained_s:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sizes", default="3,6,12", help="pool sizes, at most 12")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--memory-seconds", type=float, default=60.0)
    parser.add_argument("--outage-seconds", type=float, default=30.0)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
