"""Real codex-sim and router processes on free ports, with pools written through the store."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, put_pool, register_provider
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.processes import Service, ServiceSpec, run_service, run_services


@pytest.fixture
def secret_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class Sim:
    service: Service
    auth_dir: Path
    client: httpx.Client

    @property
    def url(self) -> str:
        return self.service.url

    def auth_json(self, n: int) -> dict[str, Any]:
        return dict(json.loads((self.auth_dir / f"account-{n}.auth.json").read_text()))

    def account_id(self, n: int) -> str:
        return str(self.auth_json(n)["tokens"]["account_id"])

    def fault(self, n: int, **spec: Any) -> None:
        self.client.post(f"/_sim/accounts/account-{n}/faults", json=spec).raise_for_status()

    def patch(self, n: int, **fields: Any) -> dict[str, Any]:
        response = self.client.patch(f"/_sim/accounts/account-{n}", json=fields)
        response.raise_for_status()
        return dict(response.json())

    def requests(self, path: str = "/backend-api/codex/responses") -> list[dict[str, Any]]:
        response = self.client.get("/_sim/requests", params={"path": path})
        return list(response.json()["requests"])

    def served_by(self) -> list[str]:
        names = {self.account_id(n): f"account-{n}" for n in range(1, self.accounts + 1)}
        return [names.get(r["account_id"], "?") for r in self.requests()]

    def refreshes(self) -> dict[str, Any]:
        return dict(self.client.get("/_sim/refreshes").json()["accounts"])

    @property
    def accounts(self) -> int:
        return len(list(self.auth_dir.glob("account-*.auth.json")))


def start_sim(
    tmp_path: Path, accounts: int = 3, *args: str
) -> contextlib.AbstractContextManager[Service]:
    return run_service(
        "codexpool_sim",
        env={},
        log_dir=tmp_path / "logs",
        args=["--accounts", str(accounts), "--write-auth", str(tmp_path / "auth"), *args],
        name="sim",
        ready_path="/readyz",
    )


@pytest.fixture
def sim_args() -> list[str]:
    """Extra codex-sim flags; a test overrides it with ``@pytest.mark.parametrize``."""
    return []


@pytest.fixture
def sim(tmp_path: Path, sim_args: list[str]) -> Iterator[Sim]:
    with (
        start_sim(tmp_path, 3, *sim_args) as service,
        httpx.Client(base_url=service.url, timeout=10) as c,
    ):
        yield Sim(service, tmp_path / "auth", c)


@dataclass
class Pool:
    """An agent with a pool of sim accounts, and the key to call the router with."""

    redis: Redis
    keys: Keys
    keyring: Keyring
    agent_id: str = "agent-1"
    api_key: str = ""
    providers: list[str] = field(default_factory=list)

    async def setup(self, sim: Sim, members: list[int], strategy: str = "round-robin") -> None:
        for n in range(1, sim.accounts + 1):
            await register_provider(
                self.redis, self.keys, self.keyring, f"account-{n}", sim.auth_json(n)
            )
        _, self.api_key = await create_agent(self.redis, self.keys, self.agent_id)
        self.providers = [f"account-{n}" for n in members]
        await put_pool(self.redis, self.keys, self.agent_id, strategy, self.providers)


@pytest.fixture
async def pool(redis: Redis, namespace: str, secret_key: str) -> AsyncIterator[Pool]:
    yield Pool(redis, Keys(namespace), Keyring.from_secret(secret_key))


@pytest.fixture
def router_env(infra: InfraUrls, namespace: str, secret_key: str, sim: Sim) -> dict[str, str]:
    return {
        "REDIS_URL": infra.redis_url,
        "AMQP_URL": infra.amqp_url,
        "CODEXPOOL_NAMESPACE": namespace,
        "CODEXPOOL_SECRET_KEY": secret_key,
        "CODEXPOOL_UPSTREAM_BASE_URL": sim.url + "/backend-api",
        "CODEXPOOL_AUTH_BASE_URL": sim.url,
        "OTEL_TRACES_EXPORTER": "none",
        # Spans cost CPU even unexported; tests that look at spans turn sampling back on.
        "OTEL_TRACES_SAMPLER": "always_off",
        "OTEL_METRICS_EXPORTER": "none",
        "ROUTER_TTFB_TIMEOUT_S": "5",
        "ROUTER_QUOTA_FLUSH_S": "0.05",
    }


@pytest.fixture
def routers(tmp_path: Path, router_env: dict[str, str]) -> Iterator[Any]:
    """``routers(n, **env)`` starts n router processes; all stop at the end of the test."""
    with contextlib.ExitStack() as stack:

        def start(n: int = 1, **env: str) -> list[Service]:
            specs = [
                ServiceSpec("codexpool_router", {**router_env, **env}, name=f"router-{i}")
                for i in range(n)
            ]
            return stack.enter_context(run_services(specs, log_dir=tmp_path / "logs"))

        yield start
