"""A provider's SOCKS5 egress (issue 19) through the test helpers' real SOCKS5 server: the
router's proxied session tunnels through it with the URL's credentials, keeps its tunnels in its
pool, and a proxy that is down or refuses the credentials is aiohttp's proxy connection error
(the router's ``connection_error``, a failover), never another exception."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from codexpool_router.attempt import run_attempt
from codexpool_router.egress import _proxied_session
from codexpool_shared.store.egress import parse_proxy
from codexpool_shared.testing.socks5 import Socks5Server

pytestmark = pytest.mark.timeout(20)
USER, PASSWORD = "pool", "socks-password"


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path, "body": (await request.read()).decode()})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://localhost:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_requests_tunnel_through_the_proxy_with_its_credentials(upstream: str) -> None:
    async with Socks5Server(USER, PASSWORD) as proxy:
        session = _proxied_session(
            parse_proxy(f"socks5://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}")
        )
        async with session:
            for n in range(3):
                headers = {"chatgpt-account-id": "acct-2"}
                async with session.post(f"{upstream}/x/{n}", data=b"hi", headers=headers) as r:
                    assert r.status == 200
                    assert (await r.json()) == {"path": f"/x/{n}", "body": "hi"}
    port = upstream.rsplit(":", 1)[1]
    # The host name went to the proxy (it resolves it), and one pooled tunnel carried all three.
    assert proxy.connects == [f"localhost:{port}"]
    assert [(c.method, c.target, c.account_id) for c in proxy.requests] == [
        ("POST", f"/x/{n}", "acct-2") for n in range(3)
    ]
    assert proxy.refused_auth == proxy.unreadable == 0


@pytest.mark.parametrize("credentials", ["", f"{USER}:wrong@"])
async def test_refused_credentials_are_a_proxy_connection_error(
    upstream: str, credentials: str
) -> None:
    async with Socks5Server(USER, PASSWORD) as proxy:
        async with _proxied_session(
            parse_proxy(f"socks5h://{credentials}127.0.0.1:{proxy.port}")
        ) as session:
            with pytest.raises(aiohttp.ClientProxyConnectionError) as refused:
                await session.get(upstream)
    assert proxy.refused_auth == 1 and not proxy.connects
    assert PASSWORD not in str(refused.value)


async def test_a_stopped_proxy_fails_the_attempt_as_a_connection_error(upstream: str) -> None:
    async with Socks5Server(USER, PASSWORD) as proxy:
        port = proxy.port
    async with _proxied_session(
        parse_proxy(f"socks5://{USER}:{PASSWORD}@127.0.0.1:{port}")
    ) as session:
        result = await run_attempt(
            session,
            upstream + "/backend-api/codex/responses",
            b"{}",
            {},
            budget_s=5,
            client_timeout=aiohttp.ClientTimeout(total=5),
            stream=False,
        )
    assert (result.outcome, result.error_code) == ("connection_error", "ClientProxyConnectionError")
