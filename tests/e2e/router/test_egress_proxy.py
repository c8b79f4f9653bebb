"""A provider's egress proxy (issue 19), HTTP and SOCKS5: its upstream requests and its token
refresh pass through the proxy, the other providers' do not; a proxy that stops fails that
provider over while the rest serve. Both proxies insist on their credentials."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import httpx
import pytest
from aiohttp import web
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

from codexpool_shared.store.egress import set_proxy
from codexpool_shared.testing.processes import ServiceSpec, run_services
from codexpool_shared.testing.socks5 import Socks5Server
from tests.e2e.router.conftest import Pool, Sim

BODY = {"model": "gpt-5-codex", "input": "hi"}
PROXY_USER, PROXY_PASSWORD = "pool", "proxy-password-not-for-logs"


@dataclass
class ForwardingProxy:
    """A plain HTTP forward proxy (absolute-form request targets) that records what it relays
    and insists on its credentials."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)
    """(method, target URL, chatgpt-account-id) of every relayed request."""
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        expected = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
        if request.headers.get("Proxy-Authorization") != f"Basic {expected}":
            return web.Response(status=407)
        target = request.raw_path
        self.seen.append((request.method, target, request.headers.get("chatgpt-account-id", "")))
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in {"host", "proxy-authorization", "proxy-connection"}
        }
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method, target, headers=headers, data=await request.read()
            ) as upstream,
        ):
            AioHttpClientInstrumentor.uninstrument_session(session)
            answer = web.StreamResponse(status=upstream.status)
            for k, v in upstream.headers.items():
                if k.lower() not in {"transfer-encoding", "content-length", "connection"}:
                    answer.headers[k] = v
            await answer.prepare(request)
            async for chunk in upstream.content.iter_any():
                await answer.write(chunk)
            await answer.write_eof()
            return answer

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ForwardingProxy]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self.port = runner.addresses[0][1]
        try:
            yield self
        finally:
            await runner.cleanup()


@dataclass(frozen=True)
class RunningProxy:
    url: str
    """Its URL, credentials included, as an operator gives it."""
    seen: Callable[[], list[tuple[str, str, str]]]
    """(method, path, chatgpt-account-id) of every request it carried so far."""

    @property
    def shown(self) -> str:
        return self.url.replace(f"{PROXY_USER}:{PROXY_PASSWORD}@", "")


@contextlib.asynccontextmanager
async def running_proxy(scheme: str) -> AsyncIterator[RunningProxy]:
    """An HTTP forward proxy or a SOCKS5 server (the test helpers' own, RFC 1928/1929)."""
    if scheme == "http":
        forwarding = ForwardingProxy()
        async with forwarding.running():
            yield RunningProxy(
                f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{forwarding.port}",
                lambda: [(m, urlsplit(t).path, a) for m, t, a in forwarding.seen],
            )
        return
    async with Socks5Server(PROXY_USER, PROXY_PASSWORD) as socks:

        def carried() -> list[tuple[str, str, str]]:
            assert socks.unreadable == 0 and socks.refused_auth == 0
            return [(c.method, c.target, c.account_id) for c in socks.requests]

        yield RunningProxy(
            f"{scheme}://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{socks.port}", carried
        )


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_one_providers_traffic_and_refresh_go_through_its_proxy(
    sim: Sim, pool: Pool, routers, scheme: str
) -> None:
    await pool.setup(sim, [1, 2, 3])
    sim.client.patch(
        "/_sim/accounts", json={"primary_cost_percent": 0, "secondary_cost_percent": 0}
    ).raise_for_status()
    async with running_proxy(scheme) as proxy:
        shown = await set_proxy(pool.redis, pool.keys, pool.keyring, "account-2", proxy.url)
        assert shown == proxy.shown
        sim.patch(2, expire_access_token=True)  # its first request refreshes the token
        [router] = routers(1, ROUTER_EGRESS_SYNC_S="0.2")
        headers = {"Authorization": f"Bearer {pool.api_key}"}
        async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as client:
            served = []
            for _ in range(9):
                response = await client.post("/v1/responses", json=BODY)
                assert response.status_code == 200, response.text
                served.append(response.headers["x-codexpool-provider"])
            assert set(served) == {"account-1", "account-2", "account-3"}

            through = [path for _, path, _ in proxy.seen()]
            assert "/oauth/token" in through  # account-2's refresh
            responses = [s for s in proxy.seen() if s[1].endswith("/codex/responses")]
            assert {account for _, _, account in responses} == {sim.account_id(2)}
            # Every upstream request of account-2 went through it (the sim saw no other).
            upstream = sim.requests()
            mine = [r for r in upstream if r["account_id"] == sim.account_id(2)]
            assert len(mine) == len(responses) >= served.count("account-2")

            # The proxy stops: account-2 is a connection failure and fails over.
            stopped_at = len(proxy.seen())
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as client:
        failovers = 0
        for _ in range(9):
            started = time.monotonic()
            response = await client.post("/v1/responses", json=BODY)
            assert response.status_code == 200, response.text
            assert time.monotonic() - started < 5
            assert response.headers["x-codexpool-provider"] != "account-2"
            failovers += int(response.headers["x-codexpool-attempts"]) - 1
        assert failovers >= 1
        metrics = (await client.get("/metrics")).text
    assert len(proxy.seen()) == stopped_at
    failed = [
        line
        for line in metrics.splitlines()
        if line.startswith("codexpool_router_attempts_total")
        and 'provider="account-2"' in line
        and 'outcome="connection_error"' in line
    ]
    assert failed and float(failed[0].rsplit(" ", 1)[1]) >= 1, metrics


@pytest.mark.parametrize("scheme", ["http", "socks5h"])
async def test_refresh_live_state_reads_usage_and_refreshes_through_the_proxy(
    sim: Sim, pool: Pool, router_env: dict[str, str], tmp_path: Path, scheme: str
) -> None:
    """The admin API's own upstream calls for a proxied provider (its /wham/usage read and the
    token refresh a 401 there starts) go through the proxy too; the other provider's do not."""
    await pool.setup(sim, [1, 2])
    async with running_proxy(scheme) as proxy:
        await set_proxy(pool.redis, pool.keys, pool.keyring, "account-2", proxy.url)
        sim.patch(2, expire_access_token=True)
        env = {**router_env, "CODEXPOOL_ADMIN_TOKEN": "admin-token-for-the-proxy-test"}
        spec = ServiceSpec("codexpool_admin_api", env, name="admin-api")
        with run_services([spec], log_dir=tmp_path / "logs") as [admin]:
            headers = {"Authorization": "Bearer admin-token-for-the-proxy-test"}
            async with httpx.AsyncClient(base_url=admin.url, headers=headers, timeout=30) as c:
                refreshed = await c.post(f"/api/agents/{pool.agent_id}/codex-pool/refresh")
                assert refreshed.status_code == 200, refreshed.text
                rows = {r["provider"]: r for r in refreshed.json()["providers"]}
                assert all(r["refresh_error"] is None for r in rows.values()), rows
                assert all(r["quota"] for r in rows.values()), rows
            log = admin.log()
        through = [(path, account) for _, path, account in proxy.seen()]
    assert ("/oauth/token", "") in through
    usage = [account for path, account in through if path.endswith("wham/usage")]
    assert usage and set(usage) == {sim.account_id(2)}
    direct = [r["account_id"] for r in sim.requests("/backend-api/wham/usage")]
    assert direct.count(sim.account_id(1)) == 1
    assert direct.count(sim.account_id(2)) == len(usage)  # none of them bypassed the proxy
    assert PROXY_PASSWORD not in log
