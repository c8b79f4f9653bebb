from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from codexpool_shared.testing.infra import InfraUrls, infrastructure, unique_namespace

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def infra() -> Iterator[InfraUrls]:
    """The real Redis and RabbitMQ; fails the test (never skips) when they are missing."""
    try:
        with infrastructure() as urls:
            yield urls
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def namespace() -> str:
    return unique_namespace()


@pytest.fixture
async def redis(infra: InfraUrls, namespace: str) -> AsyncIterator[Redis]:
    """A client on the real Redis; every key of the test's namespace is deleted afterwards."""
    client = Redis.from_url(infra.redis_url, socket_timeout=5, socket_connect_timeout=5)
    yield client
    async for key in client.scan_iter(match=f"{namespace}:*", count=500):
        await client.delete(key)
    await client.aclose()
