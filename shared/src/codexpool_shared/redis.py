"""The Redis client every service uses, with timeouts that turn a blackholed Redis into an error."""

from __future__ import annotations

import logging
from typing import Any, cast

from redis import exceptions
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster

from codexpool_shared.config import InfraSettings

log = logging.getLogger(__name__)

UNAVAILABLE: tuple[type[Exception], ...] = (
    exceptions.ConnectionError,
    exceptions.TimeoutError,
    exceptions.ClusterDownError,
    exceptions.TryAgainError,
    exceptions.RedisClusterException,
)
"""What a Redis call raises when the store cannot answer now (as opposed to a bad command):
refused or timed-out connections and, on a Redis Cluster, no reachable node, a slot not
served (``RedisClusterException`` and its ``SlotNotCoveredError``), a cluster marked down or
a slot mid-migration. Services answer these with ``store_unavailable`` or hold their work and
retry."""

STORE_FAILED: tuple[type[Exception], ...] = (
    *UNAVAILABLE,
    exceptions.RedisError,
    OSError,
    TimeoutError,
)
"""Anything a call on the store raises when it fails, whatever the cause: what code that must
go on without the store catches (the router's fail-open selection, its background reads)."""


def _client(settings: InfraSettings, max_connections: int) -> Redis:
    """A pooled async client; every call is bounded by ``settings.redis_timeout_s``.

    Its connections are named after the namespace (``CLIENT LIST`` shows who holds them).

    redis-py long defaulted to ``socket_timeout=None`` (redis/redis-py#2243): a read from a
    blackholed peer then never returns. Every wait here has a deadline, including the wait for a
    free connection: a burst larger than the pool queues for at most the timeout instead of
    failing at once with "Too many connections".

    With ``settings.redis_cluster`` it is redis-py's cluster client, typed as ``Redis``: it
    offers every command, script and pipeline (MULTI and WATCH within one slot) the stores use,
    with the same signatures, and every key of a namespace is in one slot. Its pool holds
    ``max_connections`` per node and fails at once when they are all busy.
    """
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_timeout": settings.redis_timeout_s,
        "health_check_interval": 15,
        "client_name": settings.namespace,
    }
    if settings.redis_cluster:
        cluster = RedisCluster.from_url(
            str(settings.redis_url), max_connections=max_connections, **timeouts
        )
        return cast(Redis, cluster)
    pool = BlockingConnectionPool.from_url(
        str(settings.redis_url),
        max_connections=max_connections,
        timeout=settings.redis_timeout_s,
        **timeouts,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() disconnects it


async def open_redis(settings: InfraSettings, *, max_connections: int = 64) -> Redis:
    """A service's Redis client (``_client``); on a cluster, with its slot map already learnt.

    redis-py's cluster client otherwise discovers the cluster on the first command; a burst of
    concurrent first commands (a router's first requests) can then run on connections of the
    startup node that discovery closes under them (seen as ``AttributeError`` on a closed
    writer, about one run in ten of the racing quota test). A cluster that cannot be reached
    now is left to be discovered on first use: readiness reports it meanwhile.
    """
    redis = _client(settings, max_connections)
    if settings.redis_cluster:
        try:
            await cast(RedisCluster, redis).initialize()
        except UNAVAILABLE as exc:
            log.warning(
                "Redis Cluster not reachable at start, discovering it on first use: %r", exc
            )
    return redis
