"""An attempt whose request cannot even be built is that attempt's failure, not a 500."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from codexpool_router.attempt import run_attempt


async def test_a_header_aiohttp_refuses_fails_the_attempt() -> None:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(text="should not be reached")

    app = web.Application()
    app.router.add_post("/responses", answer)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        result = await run_attempt(
            session,
            str(server.make_url("/responses")),
            b"{}",
            {"chatgpt-account-id": "a\r\nX-Injected: yes"},
            budget_s=5,
            client_timeout=aiohttp.ClientTimeout(total=5),
            stream=True,
        )
    assert (result.outcome, result.error_code) == ("connection_error", "invalid_upstream_request")
    assert result.status is None
