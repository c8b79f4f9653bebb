"""The usage fetch and the device-code login against fake upstreams (httpx.MockTransport)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from codexpool_admin_api.oauth import DeviceFlow
from codexpool_admin_api.usage import UsageError, fetch_usage
from codexpool_shared.errors import ApiError
from codexpool_shared.oauth import CODEX_CLIENT_ID
from codexpool_shared.usage import parse_usage

USAGE = {
    "plan_type": "pro",
    "rate_limit": {
        "allowed": True,
        "limit_reached": False,
        "primary_window": {
            "used_percent": 8,
            "limit_window_seconds": 17940,
            "reset_after_seconds": 6625,
            "reset_at": 1761548349,
        },
        "secondary_window": {
            "used_percent": 15,
            "limit_window_seconds": 604740,
            "reset_after_seconds": 54618,
            "reset_at": 1761596280,
        },
    },
    "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
}


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_usage_document_becomes_a_quota_snapshot() -> None:
    snapshot = parse_usage(USAGE, observed_at_ms=1761540000123)
    assert snapshot.observed_at_ms == 1761540000123
    assert snapshot.primary is not None and snapshot.secondary is not None
    assert (snapshot.primary.used_percent, snapshot.primary.window_minutes) == (8.0, 299)
    assert snapshot.primary.resets_at == 1761548349
    assert (snapshot.secondary.used_percent, snapshot.secondary.window_minutes) == (15.0, 10079)
    assert (snapshot.plan_type, snapshot.credits_balance) == ("pro", "0")
    empty = parse_usage({"rate_limit": None, "credits": None}, observed_at_ms=1)
    assert empty.primary is None and empty.credits_has_credits is None


async def test_fetch_usage_sends_the_account_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=USAGE)

    before_ms = time.time_ns() // 1_000_000
    async with _client(handler) as http:
        snapshot = await fetch_usage(http, "http://up/backend-api/", "at-1", "acc-1")
    assert before_ms <= snapshot.observed_at_ms <= time.time_ns() // 1_000_000
    assert str(seen[0].url) == "http://up/backend-api/wham/usage"
    assert seen[0].headers["authorization"] == "Bearer at-1"
    assert seen[0].headers["chatgpt-account-id"] == "acc-1"
    assert snapshot.primary is not None and snapshot.primary.used_percent == 8.0


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(401, json={"error": {"code": "token_expired"}}), "refused the token"),
        (httpx.Response(502, text="bad gateway"), "answered 502"),
        (httpx.Response(200, text="not json"), "malformed JSON"),
        (httpx.Response(200, json=[1, 2]), "malformed JSON"),
    ],
)
async def test_fetch_usage_failures(response: httpx.Response, reason: str) -> None:
    async with _client(lambda _: response) as http:
        with pytest.raises(UsageError) as raised:
            await fetch_usage(http, "http://up", "secret-access-token", "acc-1")
    assert reason in str(raised.value)
    assert "secret-access-token" not in str(raised.value)


async def test_device_login_pending_then_linked() -> None:
    calls: list[tuple[str, bytes]] = []
    approved = False

    def issuer(request: httpx.Request) -> httpx.Response:
        calls.append((request.url.path, request.content))
        if request.url.path == "/api/accounts/deviceauth/usercode":
            assert json.loads(request.content) == {"client_id": CODEX_CLIENT_ID}
            return httpx.Response(
                200, json={"device_auth_id": "dev-1", "usercode": "ABCD-EFGH", "interval": 3}
            )
        if request.url.path == "/api/accounts/deviceauth/token":
            if not approved:
                return httpx.Response(403, json={"error": {"code": "pending"}})
            return httpx.Response(200, json={"authorization_code": "ac", "code_verifier": "cv"})
        assert request.url.path == "/oauth/token"
        return httpx.Response(
            200, json={"access_token": "at", "refresh_token": "rt", "id_token": "it"}
        )

    async with _client(issuer) as http:
        flow = DeviceFlow(http, "http://issuer/")
        started = await flow.start()
        assert (started.device_auth_id, started.user_code, started.interval_s) == (
            "dev-1",
            "ABCD-EFGH",
            3,
        )
        assert started.expires_in_s == 900
        assert flow.verification_uri == "http://issuer/codex/device"
        assert await flow.poll("dev-1", "ABCD-EFGH") is None
        approved = True
        tokens = await flow.poll("dev-1", "ABCD-EFGH")
    assert tokens is not None
    assert (tokens.access_token, tokens.refresh_token, tokens.id_token) == ("at", "rt", "it")
    exchange = dict(httpx.QueryParams(calls[-1][1].decode()))
    assert exchange == {
        "grant_type": "authorization_code",
        "code": "ac",
        "redirect_uri": "http://issuer/deviceauth/callback",
        "client_id": CODEX_CLIENT_ID,
        "code_verifier": "cv",
    }


async def test_issuer_errors_are_502_without_reflecting_the_body() -> None:
    def issuer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "rt_leaked_in_body"}})

    async with _client(issuer) as http:
        with pytest.raises(ApiError) as raised:
            await DeviceFlow(http, "http://issuer").start()
    assert raised.value.status_code == 502
    assert "rt_leaked_in_body" not in raised.value.message

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with _client(unreachable) as http:
        with pytest.raises(ApiError, match="unreachable"):
            await DeviceFlow(http, "http://issuer").poll("d", "u")
