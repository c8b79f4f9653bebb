"""The browser tier: Debian's chromium driving the real UI, admin API, router, health, codex-sim.

One stack per test session (per xdist worker): five processes on free ports against the real
Redis and RabbitMQ in a namespace of its own. Tests stay independent by using their own agent
and their own freshly created sim accounts, registered under names of their own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from redis import Redis

from codexpool_shared.keys import Keys
from codexpool_shared.messaging.topology import delete_topology
from codexpool_shared.testing.infra import InfraUrls, unique_namespace
from codexpool_shared.testing.processes import ServiceSpec, free_port, run_services

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODEL_BODY = {"model": "gpt-5-codex", "input": "hi", "stream": True}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session", autouse=True)
def _keep_traces_of_failures(pytestconfig: pytest.Config) -> None:
    # STYLE 21: retain a Playwright trace of every failing test, next to the screenshots.
    if pytestconfig.getoption("--tracing") == "off":
        pytestconfig.option.tracing = "retain-on-failure"
        pytestconfig.option.output = str(ARTIFACTS / "traces")


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """Debian's chromium: Playwright cannot download browsers here."""
    executable = Path("/usr/bin/chromium")
    if not executable.exists():
        pytest.fail("/usr/bin/chromium is missing: run `make chromium`", pytrace=False)
    return {"executable_path": str(executable), "args": CHROMIUM_ARGS}


@dataclass
class Stack:
    """The running services and the credentials the tests use."""

    sim: str
    router: str
    admin_api: str
    ui: str
    admin_token: str
    viewer_token: str
    logs: Path

    def admin(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.Client(base_url=self.admin_api, headers=headers, timeout=20)

    def published(self) -> float:
        """Outcome events the router has published to RabbitMQ so far."""
        metrics = httpx.get(f"{self.router}/metrics", timeout=5).text
        found = re.search(r"^codexpool_events_published_total (\S+)$", metrics, re.M)
        return float(found.group(1)) if found else 0.0

    def wait_for_events(self, minimum: float, timeout_s: float = 20.0) -> None:
        """Until the router has published ``minimum`` outcome events in all.

        The page's numbers come from those events; without them a test would only say "0".
        """
        deadline = time.monotonic() + timeout_s
        published = self.published()
        while published < minimum and time.monotonic() < deadline:
            time.sleep(0.2)
            published = self.published()
        if published >= minimum:
            return
        raise AssertionError(
            f"the router has published {published:.0f} outcome events, not the {minimum:.0f} "
            f"expected within {timeout_s} s: does RabbitMQ answer AMQP? (logs in {self.logs})"
        )


@pytest.fixture(scope="session")
def stack(infra: InfraUrls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("stack")
    logs = base / "logs"
    admin_token = "cpa_" + secrets.token_urlsafe(32)
    sim_port, admin_port, router_port = free_port(), free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    namespace = unique_namespace()
    env = {
        "REDIS_URL": infra.redis_url,
        "AMQP_URL": infra.amqp_url,
        "CODEXPOOL_NAMESPACE": namespace,
        "CODEXPOOL_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CODEXPOOL_ADMIN_TOKEN": admin_token,
        "CODEXPOOL_UPSTREAM_BASE_URL": sim + "/backend-api",
        "CODEXPOOL_AUTH_BASE_URL": sim,
        "CODEXPOOL_ADMIN_API_URL": f"http://127.0.0.1:{admin_port}",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "UI_LIVE_INTERVAL_MS": "1000",
        "UI_ROUTER_PUBLIC_URL": f"http://127.0.0.1:{router_port}",
        "HEALTH_RESCORE_INTERVAL_S": "1",
    }
    sim_args = ("--accounts", "1", "--write-auth", str(base / "auth"))
    specs = [
        ServiceSpec("codexpool_sim", env, sim_args, port=sim_port, name="sim"),
        ServiceSpec("codexpool_health", env, name="health"),
        ServiceSpec("codexpool_router", env, port=router_port, name="router"),
        ServiceSpec("codexpool_admin_api", env, port=admin_port, name="admin-api"),
        ServiceSpec("codexpool_ui", env, name="ui"),
    ]
    with run_services(specs, log_dir=logs) as [sim_service, _, router, admin_api, ui]:
        with httpx.Client(base_url=admin_api.url, timeout=20) as client:
            response = client.post(
                "/api/tokens",
                json={"name": "browser viewer", "role": "viewer"},
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            response.raise_for_status()
        yield Stack(
            sim_service.url,
            router.url,
            admin_api.url,
            ui.url,
            admin_token,
            response.json()["token"],
            logs,
        )
    delete_namespace(infra, namespace)


def delete_namespace(infra: InfraUrls, namespace: str) -> None:
    """Remove a namespace's Redis keys and RabbitMQ queues and exchanges."""
    with Redis.from_url(infra.redis_url, socket_timeout=5) as redis:
        for key in redis.scan_iter(match=Keys(namespace).pattern, count=500):
            redis.delete(key)
    # On a thread of its own: Playwright's sync API keeps an event loop on this one.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, _delete_topology(infra.amqp_url, namespace)).result(60)


async def _delete_topology(amqp_url: str, namespace: str) -> None:
    # Best effort: a broker that does not answer must not turn a passing session into an error.
    with contextlib.suppress(TimeoutError, aio_pika.exceptions.AMQPError, OSError):
        async with await aio_pika.connect(amqp_url, timeout=10) as connection:
            await delete_topology(await connection.channel(), namespace)


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    """Every page's relative URLs go to the UI (pytest-playwright reads this fixture)."""
    return stack.ui


_serial = count(1)


@dataclass
class Pool:
    """An agent of one test, with fresh sim accounts registered as providers of its own."""

    stack: Stack
    agent_id: str
    api_key: str
    providers: list[str]
    accounts: dict[str, str]
    """Provider name -> sim account id."""

    @property
    def page_path(self) -> str:
        return f"/agents/{self.agent_id}/codex-pool"

    def save(self, strategy: str, providers: list[str]) -> None:
        with self.stack.admin() as admin:
            body = {"strategy": strategy, "providers": providers}
            admin.put(f"/api/agents/{self.agent_id}/codex-pool", json=body).raise_for_status()

    def send(self, n: int) -> list[str]:
        """n requests through the router; the providers that served them."""
        served = []
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(base_url=self.stack.router, headers=headers, timeout=30) as router:
            for _ in range(n):
                response = router.post("/v1/responses", json=MODEL_BODY)
                assert response.status_code == 200, response.text
                served.append(response.headers["x-codexpool-provider"])
        return served

    def sim(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.stack.sim + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def sim_requests(self, provider: str) -> list[dict[str, Any]]:
        params = {"account_id": self.accounts[provider], "path": "/backend-api/codex/responses"}
        return list(self.sim("GET", "/_sim/requests", params=params)["requests"])


@pytest.fixture
def make_pool(stack: Stack) -> Iterator[Any]:
    """``make_pool(n, names=None)``: an agent and n new sim accounts registered as providers."""
    made: list[Pool] = []

    def make(n: int, names: list[str] | None = None) -> Pool:
        serial = next(_serial)
        names = names or [f"t{serial}-account-{i}" for i in range(1, n + 1)]
        accounts = {}
        with stack.admin() as admin:
            for name in names:
                created = httpx.post(f"{stack.sim}/_sim/accounts", json={}, timeout=10).json()
                accounts[name] = created["account_id"]
                body = {"name": name, "auth_json": created["auth_json"]}
                admin.post("/api/providers", json=body).raise_for_status()
            agent = admin.post("/api/agents", json={"id": f"agent-{serial}"})
            agent.raise_for_status()
        pool = Pool(stack, f"agent-{serial}", agent.json()["api_key"], names, accounts)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        for account in pool.accounts.values():
            httpx.delete(f"{stack.sim}/_sim/accounts/{account}/faults", timeout=10)


def _signed_in_state(browser: Browser, stack: Stack, token: str, path: Path) -> Path:
    context = browser.new_context(base_url=stack.ui)
    page = context.new_page()
    page.goto("/login")
    page.get_by_test_id("login-token").fill(token)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("signed-in-as")).to_be_visible()
    context.storage_state(path=path)
    context.close()
    return path


@pytest.fixture(scope="session")
def admin_state(browser: Browser, stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sign in once as admin; every admin test reuses the session (STYLE 21)."""
    path = tmp_path_factory.mktemp("auth") / "admin.json"
    return _signed_in_state(browser, stack, stack.admin_token, path)


@pytest.fixture(scope="session")
def viewer_state(browser: Browser, stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "viewer.json"
    return _signed_in_state(browser, stack, stack.viewer_token, path)


@pytest.fixture
def admin_page(new_context: Any, admin_state: Path) -> Page:
    context: BrowserContext = new_context(storage_state=admin_state)
    return context.new_page()


@pytest.fixture
def viewer_page(new_context: Any, viewer_state: Path) -> Page:
    context: BrowserContext = new_context(storage_state=viewer_state)
    return context.new_page()
