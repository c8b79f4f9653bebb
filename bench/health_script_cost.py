"""Redis CPU per applied event of the health service's apply script alone (no broker, no service).

    uv run python bench/health_script_cost.py [--batches 50] [--rounds 5] [--explain | --no-explain]
                                              [--tree PATH ...]

A private ``redis-server`` (``CONFIG RESETSTAT`` is fine there) takes ``--batches`` batches of 100
outcome events through ``HealthStore.apply``, each event shaped like the router's (3 providers, 3
agents, a fallback after a 15 % server error, latencies spread over the histogram, token usage,
a fresh request id and, with ``--explain``, a routing decision of 3 candidates). Around them:
``INFO cpu`` (``used_cpu_user + used_cpu_sys``) and ``INFO commandstats``, so the figure is the
script's whole cost per applied event and the commands it makes are shown beside it; what is left
over is the script's own work (decoding the plan, its loops, ``redis.call``, the arguments).
Every batch is then applied again, and none of it may count twice.

``--tree`` (repeatable) runs the same measurement with another checkout's ``shared`` and
``services/health`` sources (a ``git worktree`` of a baseline, say), alternating between the
trees round by round, so an A/B runs on the same server under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from redis.asyncio import Redis

from codexpool_health.store import HealthStore, Outcome
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import encode
from codexpool_shared.testing.measure import redis_cpu_seconds
from codexpool_shared.testing.messaging import random_outcome
from codexpool_shared.testing.redis_server import private_redis

PROVIDERS = ["acct-1", "acct-2", "acct-3"]
AGENTS = ["agent-1", "agent-2", "agent-3"]
BATCH = 100


async def measure(redis_url: str, batches: int, explain: bool) -> dict[str, object]:
    """Apply the batches once in a fresh namespace; Redis CPU and commands per applied event."""
    redis = Redis.from_url(redis_url)
    store = HealthStore(
        redis,
        Keys("bench-" + uuid.uuid4().hex[:8]),
        seen_ttl_s=86_400,
        log_maxlen=100_000,
        explain_ttl_s=86_400 if explain else 0,
        recent_max=200,
        score_refresh_s=1.0,
    )
    rng = random.Random(1)
    data = [
        [
            Outcome(e, encode(e))
            for e in (
                random_outcome(rng, PROVIDERS, AGENTS, usage=True, decision=explain)
                for _ in range(BATCH)
            )
        ]
        for _ in range(batches + 1)
    ]
    await store.apply(data.pop())  # loads the script
    await redis.config_resetstat()
    before = await redis_cpu_seconds(redis)
    applied = 0
    for batch in data:
        applied += sum((await store.apply(batch)).applied)
    used = await redis_cpu_seconds(redis) - before
    commands = await redis.info("commandstats")
    for batch in data:
        if any((await store.apply(batch)).applied):
            raise AssertionError("a batch applied again counted again")
    await redis.aclose()
    return {
        "us_per_event": used / applied * 1e6,
        "body_bytes": len(data[0][0].body),
        "commands": {
            name.removeprefix("cmdstat_"): (stats["calls"] / applied, stats["usec"] / applied)
            for name, stats in commands.items()
            if name not in ("cmdstat_config|resetstat", "cmdstat_info")
        },
    }


def run_tree(tree: str, redis_url: str, batches: int, explain: bool) -> dict[str, object]:
    sources = [f"{tree}/services/health/src", f"{tree}/shared/src"]
    argv = [sys.executable, __file__, "--worker", redis_url, "--batches", str(batches)]
    result = subprocess.run(
        [*argv, "--explain" if explain else "--no-explain"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sources)},
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, object] = json.loads(result.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--explain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tree", action="append", default=[], help="another checkout to compare")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(measure(args.worker, args.batches, args.explain))))
        return
    trees = [str(Path(__file__).resolve().parents[1]), *args.tree]
    runs: dict[str, list[dict[str, object]]] = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory() as directory, private_redis(Path(directory)) as server:
        for round_ in range(args.rounds):
            for tree in trees if round_ % 2 == 0 else trees[::-1]:
                runs[tree].append(run_tree(tree, server.url, args.batches, args.explain))
    for tree, figures in runs.items():
        costs = [float(str(f["us_per_event"])) for f in figures]
        print(
            f"{tree}: {statistics.median(costs):.1f} us of Redis CPU per applied event "
            f"(median of {len(costs)}, {min(costs):.1f}-{max(costs):.1f}; "
            f"bodies of {figures[0]['body_bytes']} bytes, explanations "
            f"{'on' if args.explain else 'off'})"
        )
        last = figures[-1]["commands"]
        assert isinstance(last, dict)
        for name, (calls, usec) in sorted(last.items(), key=lambda item: -item[1][1]):
            print(f"    {name:<10} {calls:6.2f} calls, {usec:6.2f} us per event")


if __name__ == "__main__":
    main()
