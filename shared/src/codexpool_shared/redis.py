"""The Redis client every service uses, with timeouts that turn a blackholed Redis into an error."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from codexpool_shared.config import InfraSettings


def create_redis(settings: InfraSettings, *, max_connections: int = 64) -> Redis:
    """A pooled async client; every call is bounded by ``settings.redis_timeout_s``.

    Its connections are named after the namespace (``CLIENT LIST`` shows who holds them).

    redis-py long defaulted to ``socket_timeout=None`` (redis/redis-py#2243): a read from a
    blackholed peer then never returns. Every wait here has a deadline, including the wait for a
    free connection: a burst larger than the pool queues for at most the timeout instead of
    failing at once with "Too many connections".
    """
    pool = BlockingConnectionPool.from_url(
        str(settings.redis_url),
        max_connections=max_connections,
        timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        health_check_interval=15,
        client_name=settings.namespace,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() disconnects it
