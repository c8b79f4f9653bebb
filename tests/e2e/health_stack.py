"""Processes and pool setup for the health end-to-end tests (fixtures, imported by name).

Own fixtures rather than the router suite's, whose signatures follow that suite's needs.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, put_pool, register_provider
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.processes import Service, run_service

PROVIDERS = ["account-1", "account-2", "account-3"]


@dataclass
class Upstream:
    """codex-sim with three accounts, named ``account-1`` to ``account-3``."""

    service: Service
    auth_dir: Path
    client: httpx.Client

    def auth_json(self, n: int) -> dict[str, Any]:
        return dict(json.loads((self.auth_dir / f"account-{n}.auth.json").read_text()))

    def fault(self, n: int, **spec: Any) -> None:
        self.client.post(f"/_sim/accounts/account-{n}/faults", json=spec).raise_for_status()

    def clear_faults(self, n: int) -> None:
        self.client.delete(f"/_sim/accounts/account-{n}/faults").raise_for_status()

    def patch(self, n: int, **fields: Any) -> None:
        self.client.patch(f"/_sim/accounts/account-{n}", json=fields).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        response = self.client.get(
            "/_sim/requests", params={"path": "/backend-api/codex/responses"}
        )
        return list(response.json()["requests"])

    def served_by(self) -> list[str]:
        names = {self.auth_json(n)["tokens"]["account_id"]: f"account-{n}" for n in (1, 2, 3)}
        return [names.get(r["account_id"], "?") for r in self.requests()]


@dataclass
class Stack:
    """The processes of one test, and the agent key to call the router with."""

    infra: InfraUrls
    namespace: str
    redis: Redis
    upstream: Upstream
    secret_key: str
    logs: Path
    exits: ExitStack
    api_key: str = ""
    agent_id: str = "agent-1"

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "REDIS_URL": self.infra.redis_url,
            "AMQP_URL": self.infra.amqp_url,
            "CODEXPOOL_NAMESPACE": self.namespace,
            "CODEXPOOL_SECRET_KEY": self.secret_key,
            "CODEXPOOL_UPSTREAM_BASE_URL": self.upstream.service.url + "/backend-api",
            "CODEXPOOL_AUTH_BASE_URL": self.upstream.service.url,
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            **extra,
        }

    def start(self, module: str, **extra: str) -> Service:
        return self.exits.enter_context(
            run_service(module, env=self.env(**extra), log_dir=self.logs, name=module)
        )

    async def pool(self, members: list[int], strategy: str = "round-robin") -> None:
        keyring = Keyring.from_secret(self.secret_key)
        for n in (1, 2, 3):
            auth = self.upstream.auth_json(n)
            await register_provider(self.redis, self.keys, keyring, f"account-{n}", auth)
        _, self.api_key = await create_agent(self.redis, self.keys, self.agent_id)
        providers = [f"account-{n}" for n in members]
        await put_pool(self.redis, self.keys, self.agent_id, strategy, providers)


@pytest.fixture
def stack(infra: InfraUrls, namespace: str, redis: Redis, tmp_path: Path) -> Iterator[Stack]:
    with ExitStack() as exits:
        sim = exits.enter_context(
            run_service(
                "codexpool_sim",
                env={},
                log_dir=tmp_path / "logs",
                args=["--accounts", "3", "--write-auth", str(tmp_path / "auth")],
                name="sim",
            )
        )
        client = exits.enter_context(httpx.Client(base_url=sim.url, timeout=10))
        upstream = Upstream(sim, tmp_path / "auth", client)
        secret = base64.b64encode(os.urandom(32)).decode()
        yield Stack(infra, namespace, redis, upstream, secret, tmp_path / "logs", exits)
