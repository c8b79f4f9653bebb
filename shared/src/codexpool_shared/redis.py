"""The Redis client every service uses, with timeouts that turn a blackholed Redis into an error."""

from __future__ import annotations

from redis.asyncio import Redis

from codexpool_shared.config import InfraSettings


def create_redis(settings: InfraSettings, *, max_connections: int = 64) -> Redis:
    """A pooled async client; every call is bounded by ``settings.redis_timeout_s``.

    Its connections are named after the namespace (``CLIENT LIST`` shows who holds them).

    redis-py long defaulted to ``socket_timeout=None`` (redis/redis-py#2243): a read from a
    blackholed peer then never returns. Every wait here has a deadline.
    """
    return Redis.from_url(
        str(settings.redis_url),
        socket_connect_timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        health_check_interval=15,
        max_connections=max_connections,
        decode_responses=False,
        client_name=settings.namespace,
    )
