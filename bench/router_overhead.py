"""Router overhead: the same load sent to codex-sim directly and through one router worker.

    uv run python bench/router_overhead.py [--pairs 400] [--concurrency 64] [--seconds 5]

Reports the added time to first byte (p50, p99) at 1 and at N concurrent requests (direct and
routed requests interleaved in one run), streamed responses per second through the router on
the full path (auth, one Redis round trip, publish; counted until RabbitMQ confirmed the last
outcome event), and the failover cost: the extra time of a
request whose first attempt gets an instant 429, beyond that 429's own time. Last, the routing
explanation in the outcome event (``ROUTER_EXPLAIN``) on and off side by side: a second router
with it off, requests to both interleaved, and each one's throughput per CPU-second.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, put_pool, register_provider
from codexpool_shared.testing.cleanup import delete_namespaces
from codexpool_shared.testing.measure import cpu_seconds, pct, router_env
from codexpool_shared.testing.processes import run_service

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BODY = orjson.dumps({"model": "gpt-5-codex", "input": "hi", "stream": True, "store": False})


async def ttfb(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    async with session.post(url, data=BODY, headers=headers) as resp:
        await resp.content.readany()
        first = time.perf_counter() - started
        async for _ in resp.content.iter_any():
            pass
        if resp.status >= 300:
            raise RuntimeError(f"HTTP {resp.status}")
    return first


async def overhead(session, direct, routed, pairs: int, concurrency: int) -> tuple[float, float]:
    added: list[float] = []
    per_worker = max(1, pairs // concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            d = await ttfb(session, *direct)
            r = await ttfb(session, *routed)
            added.append(r - d)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return pct(added, 0.5) * 1000, pct(added, 0.99) * 1000


async def buffered_events(session: aiohttp.ClientSession, router_url: str) -> float:
    async with session.get(router_url + "/metrics") as resp:
        text = await resp.text()
    match = re.search(r"^codexpool_event_buffer_depth (\S+)$", text, re.MULTILINE)
    assert match, "the router exports codexpool_event_buffer_depth"
    return float(match.group(1))


async def settle(session: aiohttp.ClientSession, router_url: str) -> float:
    """Wait until RabbitMQ confirmed every outcome event the router accepted; returns seconds."""
    started = time.perf_counter()
    while await buffered_events(session, router_url):
        await asyncio.sleep(0.01)
    return time.perf_counter() - started


async def throughput(
    session, router_url: str, router_pid: int, routed, concurrency: int, seconds: float
) -> tuple[float, float, float]:
    """Streamed responses per second, counted until their outcome events are confirmed too:
    a publisher that falls behind under load would otherwise only move its cost to later.
    Also per CPU-second of the router process, which neighbours on a shared machine skew less.
    """
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await ttfb(session, *routed)
            done += 1

    started, cpu = time.perf_counter(), cpu_seconds(router_pid)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    drain = await settle(session, router_url)
    wall, cpu = time.perf_counter() - started, cpu_seconds(router_pid) - cpu
    return done / wall, done / cpu, drain


async def explain_overhead(
    session, direct, on, off, pairs: int, concurrency: int
) -> dict[str, tuple[float, float]]:
    """Added TTFB (p50, p99 ms) through the router with explanations on and off, interleaved."""
    added: dict[str, list[float]] = {"on": [], "off": []}
    per_worker = max(1, pairs // concurrency)

    async def worker() -> None:
        for i in range(per_worker):
            # Alternate which router goes first so neither always follows the direct request.
            order = (("on", on), ("off", off)) if i % 2 else (("off", off), ("on", on))
            for name, routed in order:
                d = await ttfb(session, *direct)
                added[name].append(await ttfb(session, *routed) - d)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {k: (pct(v, 0.5) * 1000, pct(v, 0.99) * 1000) for k, v in added.items()}


async def failover_cost(session, sim_url, direct, routed_fo, redis, keys, n) -> tuple[float, float]:
    fault = {"kind": "usage_limit", "count": 1}
    normal, failover, quota = [], [], []
    for _ in range(n):
        await redis.delete(keys.live("account-1"))
        normal.append(await ttfb(session, *routed_fo))
        await redis.delete(keys.live("account-1"))
        async with session.post(sim_url + "/_sim/accounts/account-1/faults", json=fault):
            pass
        failover.append(await ttfb(session, *routed_fo))
        await redis.delete(keys.live("account-1"))
        async with session.post(sim_url + "/_sim/accounts/account-1/faults", json=fault):
            pass
        quota.append(await _direct_429(session, direct))
    extra = [f - n_ - q for f, n_, q in zip(failover, normal, quota, strict=True)]
    return pct(extra, 0.5) * 1000, pct(extra, 0.99) * 1000


async def _direct_429(session, direct) -> float:
    started = time.perf_counter()
    async with session.post(direct[0], data=BODY, headers=direct[1]) as resp:
        await resp.read()
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    namespace = "bench-" + uuid.uuid4().hex[:8]
    secret = base64.b64encode(os.urandom(32)).decode()
    tmp = Path(tempfile.mkdtemp(prefix="router-bench-"))
    redis = Redis.from_url(REDIS_URL)
    keys = Keys(namespace)
    sim_args = [
        "--accounts",
        "3",
        "--write-auth",
        str(tmp / "auth"),
        "--primary-cost",
        "0",
        "--secondary-cost",
        "0",
    ]
    with run_service("codexpool_sim", env={}, log_dir=tmp, args=sim_args, name="sim") as sim:
        ring = Keyring.from_secret(secret)
        docs = {}
        for n in (1, 2, 3):
            docs[n] = orjson.loads((tmp / "auth" / f"account-{n}.auth.json").read_bytes())
            await register_provider(redis, keys, ring, f"account-{n}", docs[n])
        _, key = await create_agent(redis, keys, "bench")
        await put_pool(redis, keys, "bench", "round-robin", ["account-1", "account-2", "account-3"])
        _, fo_key = await create_agent(redis, keys, "bench-fo")
        await put_pool(redis, keys, "bench-fo", "primary-first", ["account-1", "account-2"])
        env = {
            **router_env(REDIS_URL, AMQP_URL, namespace, secret, sim.url),
            "OTEL_TRACES_SAMPLER": os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
        }
        off_env = {**env, "ROUTER_EXPLAIN": "false"}
        with (
            run_service("codexpool_router", env=env, log_dir=tmp, name="router") as router,
            run_service("codexpool_router", env=off_env, log_dir=tmp, name="router-off") as off,
        ):
            tokens = docs[1]["tokens"]
            direct = (
                sim.url + "/backend-api/codex/responses",
                {
                    "Authorization": f"Bearer {tokens['access_token']}",
                    "chatgpt-account-id": tokens["account_id"],
                    "Content-Type": "application/json",
                },
            )
            routed = (
                router.url + "/backend-api/codex/responses",
                {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                await overhead(session, direct, routed, 50, 1)  # warm up
                await settle(session, router.url)
                p50_1, p99_1 = await overhead(session, direct, routed, args.pairs, 1)
                await settle(session, router.url)
                p50_n, p99_n = await overhead(
                    session, direct, routed, args.pairs * 4, args.concurrency
                )
                await settle(session, router.url)
                rate, per_cpu, drain = await throughput(
                    session, router.url, router.process.pid, routed, args.concurrency, args.seconds
                )
                routed_fo = (
                    router.url + "/backend-api/codex/responses",
                    {"Authorization": f"Bearer {fo_key}", "Content-Type": "application/json"},
                )
                fo50, fo99 = await failover_cost(
                    session, sim.url, direct, routed_fo, redis, keys, 200
                )
                routed_off = (off.url + routed[0].removeprefix(router.url), routed[1])
                await overhead(session, direct, routed_off, 50, 1)  # warm up
                await settle(session, off.url)
                explain = await explain_overhead(session, direct, routed, routed_off, args.pairs, 1)
                explain_n = await explain_overhead(
                    session, direct, routed, routed_off, args.pairs * 2, args.concurrency
                )
                rates = {}
                for name, url, pid, r in (
                    ("on", router.url, router.process.pid, routed),
                    ("off", off.url, off.process.pid, routed_off),
                ):
                    await settle(session, url)
                    rates[name] = await throughput(
                        session, url, pid, r, args.concurrency, args.seconds
                    )
    await redis.aclose()
    # The router's publisher declared the namespace's quorum queues: leave nothing behind.
    await delete_namespaces(REDIS_URL, AMQP_URL, [namespace])
    print(f"added TTFB at 1 concurrent:   p50 {p50_1:.2f} ms, p99 {p99_1:.2f} ms")
    print(f"added TTFB at {args.concurrency} concurrent: p50 {p50_n:.2f} ms, p99 {p99_n:.2f} ms")
    print(
        f"streamed responses/s through one worker (c={args.concurrency}), events confirmed: "
        f"{rate:.0f} ({drain * 1000:.0f} ms to confirm the last events after the load); "
        f"{per_cpu:.0f} per CPU-second of the router"
    )
    print(f"failover cost (instant 429 first): p50 {fo50:.2f} ms, p99 {fo99:.2f} ms")
    print("routing explanation (ROUTER_EXPLAIN)        on          off")
    for label, found in (("1 concurrent", explain), (f"{args.concurrency} concurrent", explain_n)):
        on50, on99 = found["on"]
        off50, off99 = found["off"]
        print(f"  added TTFB p50, {label:<14} {on50:7.2f} ms  {off50:7.2f} ms")
        print(f"  added TTFB p99, {label:<14} {on99:7.2f} ms  {off99:7.2f} ms")
    print(f"  responses/s                    {rates['on'][0]:7.0f}     {rates['off'][0]:7.0f}")
    print(f"  responses per CPU-second       {rates['on'][1]:7.0f}     {rates['off'][1]:7.0f}")


if __name__ == "__main__":
    asyncio.run(main())
