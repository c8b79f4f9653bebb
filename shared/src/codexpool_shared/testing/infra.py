"""Finding the real Redis and RabbitMQ for integration tests.

docs/STYLE.md, "Where this project differs".

Order: ``REDIS_URL`` / ``AMQP_URL`` from the environment; else containers when a Docker engine
answers; else the local servers at their default addresses; else fail with instructions.
Never skip: an integration suite that silently skips proves nothing.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AmqpDsn, Field, RedisDsn
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"

HOW_TO_START = (
    "Integration tests need Redis and RabbitMQ. Set REDIS_URL and AMQP_URL, or run them locally: "
    "`make services` (Debian: apt-get install redis-server rabbitmq-server; "
    "redis-server --daemonize yes; rabbitmq-server -detached), or start a Docker engine."
)


class _InfraEnv(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    redis_url: RedisDsn | None = Field(default=None, validation_alias="REDIS_URL")
    amqp_url: AmqpDsn | None = Field(default=None, validation_alias="AMQP_URL")
    test_run: str | None = Field(default=None, validation_alias="CODEXPOOL_TEST_RUN")


@dataclass(frozen=True, slots=True)
class InfraUrls:
    """Where the test run's Redis and RabbitMQ are, and how they were found."""

    redis_url: str
    amqp_url: str
    source: str


def _answers(url: str, default_port: int, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=timeout
        ):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def _containers() -> Iterator[InfraUrls]:
    from testcontainers.rabbitmq import RabbitMqContainer
    from testcontainers.redis import RedisContainer

    with RedisContainer("redis:7") as redis, RabbitMqContainer("rabbitmq:3.13") as rabbit:
        redis_url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        amqp_url = (
            f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}/"
        )
        yield InfraUrls(redis_url, amqp_url, "testcontainers")


@contextlib.contextmanager
def infrastructure() -> Iterator[InfraUrls]:
    """The Redis and RabbitMQ of this test run, or ``RuntimeError`` saying how to get them."""
    env = _InfraEnv()
    if env.redis_url is not None and env.amqp_url is not None:
        urls = InfraUrls(str(env.redis_url), str(env.amqp_url), "environment")
    elif _docker_answers():
        with _containers() as urls:
            yield urls
        return
    else:
        urls = InfraUrls(
            str(env.redis_url or LOCAL_REDIS), str(env.amqp_url or LOCAL_AMQP), "local servers"
        )
    missing = [
        name
        for name, url, port in (("Redis", urls.redis_url, 6379), ("RabbitMQ", urls.amqp_url, 5672))
        if not _answers(url, port)
    ]
    if missing:
        names = " and ".join(missing)
        raise RuntimeError(f"{names} did not answer ({urls.source}). {HOW_TO_START}")
    yield urls


def namespace_registry(run: str) -> Path:
    """The file listing every namespace handed out during test run ``run``."""
    return Path(tempfile.gettempdir()) / "codexpool-test-runs" / f"{run}.namespaces"


def unique_namespace(prefix: str = "t") -> str:
    """A namespace no other test uses: every key and AMQP name of the test lives under it.

    Within a test run (``CODEXPOOL_TEST_RUN`` set by the root conftest) the namespace is also
    recorded, so that whatever a test leaves behind is swept when the run ends: one leaked quorum
    queue per test is a Raft group each, and a few hundred of them stall a single-node broker.
    """
    namespace = f"{prefix}-{uuid.uuid4().hex[:12]}"
    run = _InfraEnv().test_run
    if run:
        registry = namespace_registry(run)
        registry.parent.mkdir(parents=True, exist_ok=True)
        with registry.open("a") as lines:
            lines.write(namespace + "\n")
    return namespace
