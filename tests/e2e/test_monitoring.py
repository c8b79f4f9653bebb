"""What an SRE sees, against the real processes: router, health, admin API and UI on codex-sim,
scraped by a real Prometheus that evaluates the shipped rules and alerts a real Alertmanager.

Traffic exercises every part the dashboard shows (failovers, a circuit, a token refresh, quota
snapshots, outcome events); then every dashboard panel's query, its template variables filled in
from Prometheus as Grafana would, returns at least one series through Prometheus's HTTP API.
A pool whose only member runs out of quota makes CodexPoolPoolExhausted fire, and Alertmanager
delivers it to the test's webhook.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, put_pool, register_provider
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.processes import Service, ServiceSpec, free_port, run_services
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import poll, service_env
from tests.e2e.monitoring_stack import Running, Webhook, alertmanager, prometheus, webhook

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "codexpool.json"
RATE_INTERVAL = "15s"
"""What the dashboard's $__rate_interval stands for here: Grafana derives it from the scrape
interval (at least four of them); 15 s spans many of the test's 1 s scrapes."""
ADMIN_TOKEN = "e2e-monitoring-admin-" + base64.b32encode(os.urandom(15)).decode()
REQUEST = {"model": "gpt-5-codex", "input": "hi", "stream": True}
SERVING, EXHAUSTED = "agent-serving", "agent-exhausted"
"""Two pools: accounts 1 and 2 (2 failing now and then), and account 3 alone (out of quota)."""


# -- the dashboard's queries -------------------------------------------------------------------


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title and refId, expression) of every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]
    assert queries, "a dashboard without queries"
    return queries


def _label_values(definition: str) -> tuple[str, str]:
    match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", definition)
    assert match, f"add support for the variable query {definition!r}"
    return match[1], match[2]


async def variables(client: httpx.AsyncClient) -> dict[str, str]:
    """Each query variable as Grafana's "All" of its current values: a regex alternation of the
    values Prometheus has for it (none is a failure: the variable would be empty)."""
    dashboard = json.loads(DASHBOARD.read_text())
    values: dict[str, str] = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        metric, label = _label_values(variable["definition"])
        answer = await client.get(f"/api/v1/label/{label}/values", params={"match[]": metric})
        found = answer.json()["data"]
        assert found, f"variable {variable['name']}: no {label} on {metric}"
        # Each value as a regex literal, inside a PromQL string (its backslashes doubled), as
        # Grafana formats a multi-value variable for Prometheus.
        alternation = "|".join(re.escape(v).replace("\\", "\\\\") for v in found)
        values[variable["name"]] = f"({alternation})"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, f"a variable is left: {expr}"
    return expr


async def empty_queries(client: httpx.AsyncClient) -> list[str]:
    """The dashboard's queries that return no series now (an error is a failure at once)."""
    values = await variables(client)
    empty = []
    for title, expr in dashboard_queries():
        answer = await client.get("/api/v1/query", params={"query": substitute(expr, values)})
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (title, body)
        if not body["data"]["result"]:
            empty.append(title)
    return empty


async def all_variables_have_values(client: httpx.AsyncClient) -> bool:
    try:
        await variables(client)
    except AssertionError:
        return False
    return True


# -- processes ---------------------------------------------------------------------------------


async def _setup_pools(
    redis: Redis, keys: Keys, keyring: Keyring, auth_dir: Path
) -> tuple[str, str]:
    """Registers the sim's three accounts and the two agents; their router keys."""
    for n in (1, 2, 3):
        auth = json.loads((auth_dir / f"account-{n}.auth.json").read_text())
        await register_provider(redis, keys, keyring, f"account-{n}", auth)
    _, serving_key = await create_agent(redis, keys, SERVING)
    await put_pool(redis, keys, SERVING, "round-robin", ["account-1", "account-2"])
    _, exhausted_key = await create_agent(redis, keys, EXHAUSTED)
    await put_pool(redis, keys, EXHAUSTED, "round-robin", ["account-3"])
    return serving_key, exhausted_key


async def test_dashboard_and_pool_exhausted_alert_on_the_real_services(
    infra: InfraUrls, namespace: str, redis: Redis, tmp_path: Path
) -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    logs = tmp_path / "logs"
    with ExitStack() as exits:
        received = exits.enter_context(webhook())
        manager: Running = exits.enter_context(alertmanager(tmp_path / "am", received.url))
        (sim,) = exits.enter_context(
            run_services(
                [
                    ServiceSpec(
                        "codexpool_sim",
                        {},
                        ["--accounts", "3", "--write-auth", str(tmp_path / "auth")],
                        name="sim",
                    )
                ],
                log_dir=logs,
            )
        )
        serving_key, exhausted_key = await _setup_pools(
            redis, Keys(namespace), Keyring.from_secret(secret), tmp_path / "auth"
        )
        admin_port = free_port()
        env = service_env(
            infra,
            namespace,
            CODEXPOOL_SECRET_KEY=secret,
            CODEXPOOL_ADMIN_TOKEN=ADMIN_TOKEN,
            CODEXPOOL_ADMIN_API_URL=f"http://127.0.0.1:{admin_port}",
            CODEXPOOL_UPSTREAM_BASE_URL=sim.url + "/backend-api",
            CODEXPOOL_AUTH_BASE_URL=sim.url,
            OTEL_TRACES_SAMPLER="always_off",
            # A circuit opens after two consecutive faults; the fleet view is read every second.
            ROUTER_CIRCUIT_FAILURES="2",
            ROUTER_QUOTA_FLUSH_S="0.05",
            HEALTH_RESCORE_INTERVAL_S="1",
        )
        specs = [
            ServiceSpec("codexpool_router", env, name="router"),
            ServiceSpec("codexpool_health", env, name="health"),
            ServiceSpec("codexpool_admin_api", env, port=admin_port, name="admin-api"),
            ServiceSpec("codexpool_ui", env, name="ui"),
        ]
        services: dict[str, Service] = {
            s.name: s for s in exits.enter_context(run_services(specs, log_dir=logs))
        }
        targets = {name: [f"127.0.0.1:{s.port}"] for name, s in services.items()}
        server = exits.enter_context(prometheus(tmp_path / "prometheus", targets, manager.url))
        await _exercise(sim.url, services["router"].url, serving_key, exhausted_key)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as api:
            await _assert_every_panel_has_series(api)
            await _assert_pool_exhausted_alert_delivered(
                api, received, lambda: _send(services["router"].url, exhausted_key, 1)
            )


async def _exercise(sim_url: str, router: str, serving_key: str, exhausted_key: str) -> None:
    async with httpx.AsyncClient(base_url=sim_url, timeout=10) as sim:
        for method, path, body in (
            # Account 3, the exhausted pool's only member: its quota is full for two hours.
            (
                "PATCH",
                "account-3",
                {"primary_used_percent": 100, "primary_reset_after_seconds": 7200},
            ),
            # Account 2 fails three times: failovers to account 1, and its circuit opens.
            ("POST", "account-2/faults", {"kind": "http_error", "status": 500, "count": 3}),
            # Account 1's access token expires: the router refreshes it.
            ("PATCH", "account-1", {"expire_access_token": True}),
        ):
            answer = await sim.request(method, f"/_sim/accounts/{path}", json=body)
            answer.raise_for_status()
    served = await _send(router, serving_key, 12)
    assert served == [200] * 12, served
    refused = await _send(router, exhausted_key, 3)
    assert set(refused) <= {429, 503}, refused


async def _send(router: str, key: str, count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=router, headers=headers, timeout=30) as client:
        return [
            (await client.post("/v1/responses", json=REQUEST)).status_code for _ in range(count)
        ]


async def _assert_every_panel_has_series(api: httpx.AsyncClient) -> None:
    await poll(lambda: all_variables_have_values(api), timeout_s=20)
    deadline = time.monotonic() + 20
    while empty := await empty_queries(api):
        assert time.monotonic() < deadline, f"dashboard queries without a series: {empty}"
        await asyncio.sleep(0.5)


async def _assert_pool_exhausted_alert_delivered(
    api: httpx.AsyncClient, received: Webhook, refused: Callable[[], Awaitable[list[int]]]
) -> None:
    """Both views of the exhausted pool reach the webhook: the health service's fleet view, and
    the routers' refusals (a rate: clients keep being refused while it is evaluated, as they
    would be; a counter's first increment is no increase to Prometheus)."""

    async def delivered() -> list[dict[str, Any]]:
        return [
            alert
            for name in ("CodexPoolPoolExhausted", "CodexPoolRequestsPoolExhausted")
            for alert in received.alerts(name)
            if alert["status"] == "firing"
        ]

    async def both() -> bool:
        assert set(await refused()) <= {429, 503}
        names = {a["labels"]["alertname"] for a in await delivered()}
        return names == {"CodexPoolPoolExhausted", "CodexPoolRequestsPoolExhausted"}

    try:
        await poll(both, timeout_s=30)
    except AssertionError:
        alerts = (await api.get("/api/v1/alerts")).json()["data"]["alerts"]
        pytest.fail(f"not delivered; Prometheus: {alerts}; webhook: {received.notifications}")
    # Only the pool whose every member is out; as the rule labels and annotates it.
    fleet = received.alerts("CodexPoolPoolExhausted")
    assert {a["labels"]["agent"] for a in fleet} == {EXHAUSTED}
    assert fleet[0]["labels"] == {
        "alertname": "CodexPoolPoolExhausted",
        "agent": EXHAUSTED,
        "severity": "critical",
    }
    assert fleet[0]["annotations"]["runbook_url"] == "deploy/README.md#codexpoolpoolexhausted"
    assert EXHAUSTED in fleet[0]["annotations"]["summary"]
    # Prometheus's own view agrees: firing, once (not once per replica or instance).
    firing = (await api.get("/api/v1/alerts")).json()["data"]["alerts"]
    exhausted = [a for a in firing if a["labels"]["alertname"] == "CodexPoolPoolExhausted"]
    assert [(a["labels"]["agent"], a["state"]) for a in exhausted] == [(EXHAUSTED, "firing")]
