"""The one refresh-token exchange (codexpool_shared.oauth), sent with aiohttp and with httpx.

Both client libraries talk to the same in-process issuer on loopback, so a difference between
the two adapters (body, headers, parsing, errors) shows up as a failing parameter.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.oauth import (
    CODEX_CLIENT_ID,
    AiohttpTransport,
    HttpxTransport,
    RefreshAnswer,
    Refreshed,
    Refused,
    TokenExchange,
    TokenTransport,
    Transient,
)
from codexpool_shared.store import TokenRefresher

Answer = Callable[[], Awaitable[web.StreamResponse]]

CLIENTS = ("aiohttp", "httpx")
HEADERS = {"originator": "codex_cli_rs", "User-Agent": "codexpool-test"}


@asynccontextmanager
async def _transport(client: str) -> AsyncIterator[TokenTransport]:
    if client == "aiohttp":
        async with aiohttp.ClientSession() as session:
            yield AiohttpTransport(session)
    else:
        async with httpx.AsyncClient() as http:
            yield HttpxTransport(http)


@asynccontextmanager
async def _issuer(answer: Answer, seen: list[dict[str, Any]]) -> AsyncIterator[str]:
    async def token(request: web.Request) -> web.StreamResponse:
        seen.append(
            {
                "path": request.path,
                "content_type": request.content_type,
                "body": json.loads(await request.read()),
                "headers": dict(request.headers),
            }
        )
        return await answer()

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()


async def _exchange(
    client: str, answer: Answer, *, timeout_s: float = 5.0
) -> tuple[RefreshAnswer, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    async with _issuer(answer, seen) as url, _transport(client) as transport:
        exchange = TokenExchange(transport, url, timeout_s, headers=HEADERS, client_id="client-1")
        return await exchange("rt-old"), seen


def _json(status: int, doc: Any) -> Answer:
    async def answer() -> web.StreamResponse:
        return web.json_response(doc, status=status)

    return answer


def _text(status: int, text: str) -> Answer:
    async def answer() -> web.StreamResponse:
        return web.Response(status=status, text=text)

    return answer


@pytest.mark.parametrize("client", CLIENTS)
async def test_the_grant_is_sent_as_json_and_the_new_tokens_come_back(client: str) -> None:
    answer, seen = await _exchange(
        client, _json(200, {"access_token": "at-new", "refresh_token": "rt-new", "scope": "x"})
    )
    assert answer == Refreshed(access_token="at-new", refresh_token="rt-new", id_token=None)
    (request,) = seen
    assert request["path"] == "/oauth/token"
    assert request["content_type"] == "application/json"
    assert request["body"] == {
        "client_id": "client-1",
        "grant_type": "refresh_token",
        "refresh_token": "rt-old",
    }
    assert request["headers"]["originator"] == "codex_cli_rs"
    assert request["headers"]["User-Agent"] == "codexpool-test"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_json(401, {"error": {"code": "refresh_token_reused"}}), Refused("refresh_token_reused")),
        (_json(400, {"error": "invalid_grant"}), Refused("invalid_grant")),
        (_json(200, {"error": {"type": "token_expired"}}), Refused("token_expired")),
        (_text(401, "<html>no</html>"), Refused("http_401")),
        (_json(400, {"error": {"code": "something_else"}}), Transient("http_400")),
        (_text(503, "busy"), Transient("http_503")),
        (_text(200, "not json"), Transient("malformed_answer")),
        (_json(200, {"access_token": 7}), Transient("malformed_answer")),
    ],
    ids=[
        "401-reused",
        "400-invalid-grant",
        "200-permanent-code",
        "401-not-json",
        "400-other-code",
        "503",
        "200-not-json",
        "200-no-token",
    ],
)
async def test_answers_are_classified_refused_or_transient(
    client: str, answer: Answer, expected: RefreshAnswer
) -> None:
    assert (await _exchange(client, answer))[0] == expected


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_slow_issuer_is_transient_within_the_deadline(client: str) -> None:
    async def slow() -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({"access_token": "late"})

    async with asyncio.timeout(3):
        answer, _ = await _exchange(client, slow, timeout_s=0.2)
    assert isinstance(answer, Transient) and answer.reason.startswith("unreachable (")


@pytest.mark.parametrize("client", CLIENTS)
async def test_an_unreachable_issuer_is_transient_and_names_no_url(client: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with _transport(client) as transport:
        url = f"http://127.0.0.1:{port}/secret-path"
        answer = await TokenExchange(transport, url, 2.0)("rt-old")
    assert isinstance(answer, Transient) and answer.reason.startswith("unreachable (")
    assert "secret-path" not in answer.reason and str(port) not in answer.reason


class _Unused:
    async def post_json(
        self, url: str, body: Mapping[str, str], *, headers: Mapping[str, str], timeout_s: float
    ) -> tuple[int, bytes]:
        raise AssertionError("not sent")


def test_the_default_client_is_the_codex_cli() -> None:
    assert TokenExchange(_Unused(), "http://issuer", 1.0).client_id == CODEX_CLIENT_ID


def test_the_refresh_lock_must_outlive_the_exchange() -> None:
    with pytest.raises(ValueError, match="shorter than the refresh lock"):
        TokenRefresher(
            Redis(),
            Keys("t"),
            Keyring([os.urandom(32)]),
            TokenExchange(_Unused(), "http://issuer", 15.0),
            lock_s=15.0,
            outcome=lambda _: None,
            publish=lambda _: None,
            actor="test",
        )
