from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient

from codexpool_admin_api.app import create_app
from codexpool_admin_api.config import Settings
from codexpool_shared.keys import Keys
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.messaging import InMemoryPublisher
from codexpool_sim.app import SimApp
from codexpool_sim.app import create_app as create_sim
from codexpool_sim.config import SimConfig
from tests.integration.conftest import RedisTarget

ADMIN_TOKEN = "integration-bootstrap-admin-token-" + base64.b32encode(os.urandom(10)).decode()


@pytest.fixture
def settings(infra: InfraUrls, redis_target: RedisTarget, namespace: str) -> Settings:
    return Settings.model_validate(
        {
            "REDIS_URL": redis_target.url,
            "REDIS_CLUSTER": redis_target.cluster,
            "AMQP_URL": infra.amqp_url,
            "CODEXPOOL_NAMESPACE": namespace,
            "CODEXPOOL_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
            "CODEXPOOL_ADMIN_TOKEN": ADMIN_TOKEN,
            "ADMIN_AUTH_FAILURES_PER_WINDOW": 5,
        }
    )


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace)


@pytest.fixture
def sink(namespace: str) -> InMemoryPublisher:
    """Stands in for RabbitMQ; the app's lifespan starts and closes it."""
    return InMemoryPublisher(namespace)


@pytest.fixture
def api(
    settings: Settings, sink: InMemoryPublisher, sync_redis: redis.Redis
) -> Iterator[TestClient]:
    """The admin API on the real Redis, authenticated as the bootstrap admin."""
    app = create_app(settings, publisher=sink)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        yield client


@pytest.fixture
def sim() -> SimApp:
    return create_sim(SimConfig(accounts=2, seed=7))


@pytest.fixture
def sim_admin(sim: SimApp) -> Iterator[TestClient]:
    """The sim's own admin endpoint (``/_sim``), to set quota and approve device logins."""
    with TestClient(sim, base_url="http://sim") as client:
        yield client


@pytest.fixture
def sim_api(
    infra: InfraUrls,
    redis_target: RedisTarget,
    namespace: str,
    sink: InMemoryPublisher,
    sim: SimApp,
    sync_redis: redis.Redis,
) -> Iterator[TestClient]:
    """The admin API whose upstream and OAuth issuer are the in-process codex-sim."""
    settings = Settings.model_validate(
        {
            "REDIS_URL": redis_target.url,
            "REDIS_CLUSTER": redis_target.cluster,
            "AMQP_URL": infra.amqp_url,
            "CODEXPOOL_NAMESPACE": namespace,
            "CODEXPOOL_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
            "CODEXPOOL_ADMIN_TOKEN": ADMIN_TOKEN,
            "CODEXPOOL_UPSTREAM_BASE_URL": "http://sim/backend-api",
            "CODEXPOOL_AUTH_BASE_URL": "http://sim",
        }
    )
    app = create_app(settings, publisher=sink, upstream_transport=httpx.ASGITransport(app=sim))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        yield client


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` (lifespan included) with uvicorn on a free port; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "admin API did not start"
        assert thread.is_alive(), "admin API failed to start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
