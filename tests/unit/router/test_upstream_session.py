"""The upstream session keeps no cookie an answer sets: accounts share it."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from codexpool_router.egress import upstream_session


async def test_a_cookie_one_answer_sets_never_goes_out_again() -> None:
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie("__cf_bm", "account-1-bot-score", path="/")
        return response

    app = web.Application()
    app.router.add_post("/backend-api/codex/responses", answer)
    async with TestServer(app, host="localhost") as server:
        url = f"http://localhost:{server.port}/backend-api/codex/responses"
        async with upstream_session(aiohttp.TCPConnector(limit=0)) as session:
            for _ in range(2):
                async with session.post(url, data=b"{}") as response:
                    assert response.cookies["__cf_bm"].value == "account-1-bot-score"
        # The same two requests through aiohttp's default jar: the second carries the cookie.
        async with aiohttp.ClientSession() as default:
            for _ in range(2):
                async with default.post(url, data=b"{}"):
                    pass
    assert seen == [None, None, None, "__cf_bm=account-1-bot-score"]
