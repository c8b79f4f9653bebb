"""What the benchmarks and the perf-ratio test measure a running service with."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from redis.asyncio import Redis


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu_seconds(redis: Redis) -> float:
    """User plus system CPU time of the Redis server so far (``INFO cpu``)."""
    cpu = await redis.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def metric(text: str, sample: str) -> float:
    """The value of ``sample`` (its name and labels as exposed) in Prometheus text; 0 if absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def router_env(
    redis_url: str, amqp_url: str, namespace: str, secret: str, sim_url: str
) -> dict[str, str]:
    """A router's environment in front of codex-sim at ``sim_url``, exporting nothing.

    Its spans are still made and sampled unless ``OTEL_TRACES_SAMPLER`` says otherwise.
    """
    return {
        "REDIS_URL": redis_url,
        "AMQP_URL": amqp_url,
        "CODEXPOOL_NAMESPACE": namespace,
        "CODEXPOOL_SECRET_KEY": secret,
        "CODEXPOOL_UPSTREAM_BASE_URL": sim_url + "/backend-api",
        "CODEXPOOL_AUTH_BASE_URL": sim_url,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
    }
