"""The admin API as a real process next to real codex-sim, router and health processes.

The sim, router and event-tap fixtures are the router suite's (imported, not copied).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codexpool_shared.testing.processes import Service, run_service
from tests.e2e.router.conftest import (  # noqa: F401 - fixtures, registered by import
    events,
    router_env,
    routers,
    secret_key,
    sim,
)

ADMIN_TOKEN = "e2e-bootstrap-admin-" + base64.b32encode(os.urandom(15)).decode()


@pytest.fixture
def health(tmp_path: Path, router_env: dict[str, str]) -> Iterator[Service]:  # noqa: F811
    env = {**router_env, "HEALTH_BATCH_LINGER_MS": "1"}
    with run_service("codexpool_health", env=env, log_dir=tmp_path / "logs", name="health") as svc:
        yield svc


@pytest.fixture
def admin_api(tmp_path: Path, router_env: dict[str, str]) -> Iterator[Service]:  # noqa: F811
    env = {**router_env, "CODEXPOOL_ADMIN_TOKEN": ADMIN_TOKEN}
    with run_service(
        "codexpool_admin_api", env=env, log_dir=tmp_path / "logs", name="admin-api"
    ) as service:
        yield service


@pytest.fixture
def admin(admin_api: Service) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=admin_api.url, headers=headers, timeout=20) as client:
        yield client
