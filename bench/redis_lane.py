"""One script call through redis-py's client (instrumented) against the same call on a lane.

    uv run python bench/redis_lane.py [--calls 20000] [--rounds 4] [--concurrency 32]

Both run in this process, against the shared Redis, with OpenTelemetry's redis instrumentation
on (as in every service) and a recording tracer provider, so each call makes its span either way:
the client's from the instrumentation, the lane's its own (``codexpool_shared.store.lane``).
Reported, interleaved in rounds: the time of one call at one at a time (p50, p99), and the
client process's CPU per call with ``--concurrency`` calls in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time

import uvloop
from opentelemetry import trace
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from redis.asyncio import Redis

from codexpool_shared.store.lane import Lane
from codexpool_shared.testing.measure import pct

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# About the selection's reply for a pool of three, and as many arguments.
SCRIPT = "return string.rep('a', 600)"
ARGV = [b"x" * 24] * 16


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_at_a_time(call, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1e6)
    return times


async def concurrent(call, n: int, concurrency: int) -> float:
    """CPU microseconds of this process per call."""

    async def worker() -> None:
        for _ in range(n // concurrency):
            await call()

    before = cpu()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (cpu() - before) / (n // concurrency * concurrency) * 1e6


async def run(args: argparse.Namespace) -> None:
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    redis = Redis.from_url(REDIS_URL)
    lane = Lane(redis, "EVALSHA", 1.0)
    try:
        sha = await redis.script_load(SCRIPT)
        calls = {
            "client": lambda: redis.evalsha(sha, 1, "k", *ARGV),
            "lane": lambda: lane.call(sha, 1, "k", *ARGV),
        }
        latency: dict[str, list[float]] = {name: [] for name in calls}
        per_call: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            await one_at_a_time(call, 200)  # warm-up
        for round_ in range(args.rounds):
            for name in list(calls)[:: 1 if round_ % 2 == 0 else -1]:
                latency[name] += await one_at_a_time(calls[name], args.calls // args.rounds)
                per_call[name].append(
                    await concurrent(calls[name], args.calls // args.rounds, args.concurrency)
                )
        for name in calls:
            times = latency[name]
            costs = sorted(per_call[name])
            print(
                f"{name:>6}: one at a time p50 {pct(times, 0.5):.0f} us, p99 "
                f"{pct(times, 0.99):.0f} us; at {args.concurrency} in flight "
                f"{costs[len(costs) // 2]:.1f} us of CPU per call (median of {args.rounds} rounds)"
            )
    finally:
        await lane.aclose()
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
