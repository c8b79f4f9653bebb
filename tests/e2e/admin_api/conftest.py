"""The admin API as a real process, next to real codex-sim, router and health processes."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.processes import Service, run_service
from tests.e2e.conftest import service_env

ADMIN_TOKEN = "e2e-bootstrap-admin-" + base64.b32encode(os.urandom(15)).decode()


@dataclass
class Sim:
    """A codex-sim process and the auth.json files it wrote (``--write-auth``)."""

    service: Service
    auth_dir: Path
    client: httpx.Client

    def auth_json(self, n: int) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(
            (self.auth_dir / f"account-{n}.auth.json").read_text()
        )
        return document

    def account_id(self, n: int) -> str:
        return str(self.auth_json(n)["tokens"]["account_id"])

    def patch(self, n: int, **fields: Any) -> None:
        self.client.patch(f"/_sim/accounts/{self.account_id(n)}", json=fields).raise_for_status()

    def quota(self, n: int) -> dict[str, Any]:
        accounts = self.client.get("/_sim/accounts").json()["accounts"]
        quota: dict[str, Any] = next(
            a["quota"] for a in accounts if a["account_id"] == self.account_id(n)
        )
        return quota

    def requests(self, path: str) -> list[dict[str, Any]]:
        response = self.client.get("/_sim/requests", params={"path": path})
        return list(response.json()["requests"])


@pytest.fixture
def env(infra: InfraUrls, namespace: str) -> dict[str, str]:
    """What every service process of the test shares (the sim's URLs are added per fixture)."""
    return service_env(infra, namespace)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    auth_dir = tmp_path / "auth"
    with (
        run_service(
            "codexpool_sim",
            env={},
            log_dir=tmp_path / "logs",
            args=["--accounts", "2", "--write-auth", str(auth_dir)],
            name="sim",
        ) as service,
        httpx.Client(base_url=service.url, timeout=10) as client,
    ):
        yield Sim(service, auth_dir, client)


@pytest.fixture
def services(tmp_path: Path, env: dict[str, str], sim: Sim) -> Iterator[Callable[[str], Service]]:
    """``services(module)`` starts a service wired to the sim; all stop at the end."""
    wired = {
        **env,
        "CODEXPOOL_UPSTREAM_BASE_URL": sim.service.url + "/backend-api",
        "CODEXPOOL_AUTH_BASE_URL": sim.service.url,
        "CODEXPOOL_ADMIN_TOKEN": ADMIN_TOKEN,
        "HEALTH_BATCH_LINGER_MS": "1",
    }
    with contextlib.ExitStack() as stack:

        def start(module: str) -> Service:
            return stack.enter_context(
                run_service(module, env=wired, log_dir=tmp_path / "logs", name=module)
            )

        yield start


@pytest.fixture
def admin_api(services: Callable[[str], Service]) -> Service:
    return services("codexpool_admin_api")


@pytest.fixture
def admin(admin_api: Service) -> Iterator[httpx.Client]:
    """An admin API client holding the bootstrap admin token."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=admin_api.url, headers=headers, timeout=20) as client:
        yield client
