from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from codexpool_shared.keys import Keys
from codexpool_shared.testing.cleanup import delete_namespaces, delete_topologies, run_blocking
from codexpool_shared.testing.infra import (
    InfraUrls,
    infrastructure,
    namespace_registry,
    unique_namespace,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
_RUN_VARIABLE = "CODEXPOOL_TEST_RUN"
# A live run records a namespace every few seconds; a registry untouched this long belongs to a
# run that died before its own sweep (killed, or timed out in CI).
_ABANDONED_AFTER_S = 30 * 60


def pytest_configure(config: pytest.Config) -> None:
    # The controller names the run before xdist starts its workers, which inherit the variable:
    # every namespace a worker hands out is then recorded under the same run.
    if not hasattr(config, "workerinput"):
        os.environ.setdefault(_RUN_VARIABLE, f"run-{uuid.uuid4().hex[:12]}")
        _sweep_abandoned_runs()


def _sweep_abandoned_runs() -> None:
    cutoff = time.time() - _ABANDONED_AFTER_S
    directory = namespace_registry(os.environ[_RUN_VARIABLE]).parent
    stale = [p for p in directory.glob("*.namespaces") if p.stat().st_mtime < cutoff]
    if stale:
        _sweep(stale)


def _sweep(registries: list[Path]) -> None:
    namespaces = {name for registry in registries for name in registry.read_text().split()}
    try:
        with infrastructure() as urls:
            run_blocking(delete_namespaces(urls.redis_url, urls.amqp_url, namespaces))
    except Exception as exc:  # cleanup must not hide the run's own result
        print(f"warning: could not sweep {len(namespaces)} test namespaces: {exc!r}")  # noqa: T201
        return
    for registry in registries:
        registry.unlink(missing_ok=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    registry = namespace_registry(os.environ[_RUN_VARIABLE])
    if registry.exists():
        _sweep([registry])


@pytest.fixture(scope="session")
def infra() -> Iterator[InfraUrls]:
    """The real Redis and RabbitMQ; fails the test (never skips) when they are missing."""
    try:
        with infrastructure() as urls:
            yield urls
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own; a test on the real broker has its topology deleted after.

    Its Redis keys go with the ``redis`` fixture, or in the sweep at the end of the run.
    """
    name = unique_namespace()
    yield name
    if "infra" in request.fixturenames:
        urls: InfraUrls = request.getfixturevalue("infra")
        run_blocking(delete_topologies(urls.amqp_url, [name]))


@pytest.fixture
async def redis(infra: InfraUrls, namespace: str) -> AsyncIterator[Redis]:
    """A client on the real Redis; every key of the test's namespace is deleted afterwards."""
    client = Redis.from_url(infra.redis_url, socket_timeout=5, socket_connect_timeout=5)
    yield client
    async for key in client.scan_iter(match=Keys(namespace).pattern, count=500):
        await client.delete(key)
    await client.aclose()
