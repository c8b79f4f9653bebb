"""The OAuth issuer: single-use refresh rotation, its refusals, revoke, device-code re-linking."""

from __future__ import annotations

import httpx
import pytest

from codexpool_sim.accounts import Account
from codexpool_sim.app import SimApp
from codexpool_sim.tokens import AUTH_CLAIM, CLIENT_ID, decode_jwt
from tests.unit.sim.helpers import codex_body, codex_headers

URL = "/backend-api/codex/responses"


def refresh_body(token: str) -> dict[str, str]:
    return {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": token}


async def test_refresh_works_once_then_answers_reused(
    client: httpx.AsyncClient, account: Account
) -> None:
    old_access, old_refresh = account.tokens.access_token, account.tokens.refresh_token
    first = await client.post(
        "/oauth/token", json=refresh_body(old_refresh), headers={"originator": "codex_cli_rs"}
    )
    assert first.status_code == 200
    grant = first.json()
    assert grant["token_type"] == "bearer" and grant["expires_in"] > 0
    assert grant["refresh_token"] != old_refresh and grant["access_token"] != old_access
    claims = decode_jwt(grant["id_token"])
    assert claims[AUTH_CLAIM]["chatgpt_account_id"] == account.account_id
    assert claims["email"] == account.email

    fresh = await client.post(
        URL, headers=codex_headers(account, token=grant["access_token"]), json=codex_body()
    )
    assert fresh.status_code == 200

    second = await client.post("/oauth/token", json=refresh_body(old_refresh))
    assert second.status_code == 401
    assert second.json() == {
        "error": {
            "message": "Your refresh token has already been used to generate a new access token. "
            "Please try signing in again.",
            "type": "invalid_request_error",
            "param": None,
            "code": "refresh_token_reused",
        }
    }


async def test_reuse_kills_the_grant_by_default(
    client: httpx.AsyncClient, account: Account
) -> None:
    old_refresh = account.tokens.refresh_token
    grant = (await client.post("/oauth/token", json=refresh_body(old_refresh))).json()
    await client.post("/oauth/token", json=refresh_body(old_refresh))
    dead = await client.post("/oauth/token", json=refresh_body(grant["refresh_token"]))
    assert dead.json()["error"]["code"] == "refresh_token_invalidated"
    access = await client.post(
        URL, headers=codex_headers(account, token=grant["access_token"]), json=codex_body()
    )
    assert access.status_code == 401


async def test_reuse_can_spare_the_grant(client: httpx.AsyncClient, account: Account) -> None:
    await client.patch("/_sim/config", json={"reuse_revokes_family": False})
    old_refresh = account.tokens.refresh_token
    grant = (await client.post("/oauth/token", json=refresh_body(old_refresh))).json()
    assert (await client.post("/oauth/token", json=refresh_body(old_refresh))).status_code == 401
    assert (
        await client.post("/oauth/token", json=refresh_body(grant["refresh_token"]))
    ).status_code == 200


async def test_form_encoded_refresh_is_accepted(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post("/oauth/token", data=refresh_body(account.tokens.refresh_token))
    assert response.status_code == 200
    assert response.json()["refresh_token"] == account.tokens.refresh_token


@pytest.mark.parametrize("state", ["expired", "invalidated"])
async def test_expired_and_invalidated_refresh_tokens(
    client: httpx.AsyncClient, account: Account, state: str
) -> None:
    await client.patch(f"/_sim/accounts/{account.account_id}", json={"refresh_token_state": state})
    response = await client.post("/oauth/token", json=refresh_body(account.tokens.refresh_token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == f"refresh_token_{state}"


async def test_unknown_and_empty_refresh_tokens(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/oauth/token", json=refresh_body("rt_nobody"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (
        401,
        "refresh_token_invalidated",
    )
    empty = await client.post("/oauth/token", json=refresh_body(""))
    assert empty.status_code == 400


async def test_wrong_client_and_grant_are_refused(
    client: httpx.AsyncClient, account: Account
) -> None:
    wrong_client = {**refresh_body(account.tokens.refresh_token), "client_id": "app_other"}
    assert (await client.post("/oauth/token", json=wrong_client)).status_code == 401
    wrong_grant = {**refresh_body(account.tokens.refresh_token), "grant_type": "password"}
    assert (await client.post("/oauth/token", json=wrong_grant)).status_code == 400


async def test_refresh_can_omit_the_id_token(client: httpx.AsyncClient, account: Account) -> None:
    await client.patch(f"/_sim/accounts/{account.account_id}", json={"omit_id_token": True})
    grant = (
        await client.post("/oauth/token", json=refresh_body(account.tokens.refresh_token))
    ).json()
    assert "id_token" not in grant and "access_token" in grant


async def test_revoked_refresh_token_is_invalidated(
    client: httpx.AsyncClient, account: Account
) -> None:
    revoke = {
        "token": account.tokens.refresh_token,
        "token_type_hint": "refresh_token",
        "client_id": CLIENT_ID,
    }
    response = await client.post("/oauth/revoke", json=revoke)
    assert (response.status_code, response.json()) == (200, {})
    refused = await client.post("/oauth/token", json=refresh_body(account.tokens.refresh_token))
    assert refused.json()["error"]["code"] == "refresh_token_invalidated"


async def test_refresh_counts_per_account_and_token_version(
    client: httpx.AsyncClient, app: SimApp
) -> None:
    account, other = app.accounts[0], app.accounts[1]
    first = account.tokens.refresh_token
    second = (await client.post("/oauth/token", json=refresh_body(first))).json()["refresh_token"]
    await client.post("/oauth/token", json=refresh_body(second))
    counts = (await client.get("/_sim/refreshes")).json()["accounts"]
    assert counts[account.account_id] == {
        "refreshes": 2,
        "reused": 0,
        "rejected": 0,
        "tokens": [
            {"version": 1, "state": "rotated", "uses": 1},
            {"version": 2, "state": "rotated", "uses": 1},
            {"version": 3, "state": "live", "uses": 0},
        ],
    }
    assert counts[other.account_id]["refreshes"] == 0
    await client.post("/oauth/token", json=refresh_body(first))
    view = (await client.get(f"/_sim/accounts/{account.account_id}")).json()
    assert view["refresh"]["reused"] == 1
    assert view["refresh"]["tokens"][0]["uses"] == 2


async def test_device_code_login_relinks_an_account(
    client: httpx.AsyncClient, account: Account
) -> None:
    await client.patch(
        f"/_sim/accounts/{account.account_id}", json={"refresh_token_state": "invalidated"}
    )
    started = (
        await client.post("/api/accounts/deviceauth/usercode", json={"client_id": CLIENT_ID})
    ).json()
    assert started["user_code"] == started["usercode"] and started["interval"] == 5
    poll = {"device_auth_id": started["device_auth_id"], "user_code": started["user_code"]}
    pending = await client.post("/api/accounts/deviceauth/token", json=poll)
    assert pending.status_code == 403

    listed = (await client.get("/_sim/device-codes")).json()["device_codes"]
    assert [d["user_code"] for d in listed] == [started["user_code"]]
    approve = await client.post(
        f"/_sim/device-codes/{started['user_code']}/approve",
        json={"account_id": account.account_id},
    )
    assert approve.status_code == 200

    code = (await client.post("/api/accounts/deviceauth/token", json=poll)).json()
    exchange = {
        "grant_type": "authorization_code",
        "code": code["authorization_code"],
        "redirect_uri": "https://auth.openai.com/deviceauth/callback",
        "client_id": CLIENT_ID,
        "code_verifier": code["code_verifier"],
    }
    wrong_redirect = {**exchange, "redirect_uri": "http://localhost:1455/auth/callback"}
    assert (await client.post("/oauth/token", data=wrong_redirect)).status_code == 400
    tokens = await client.post("/oauth/token", data=exchange)
    assert tokens.status_code == 200
    grant = tokens.json()
    assert decode_jwt(grant["id_token"])[AUTH_CLAIM]["chatgpt_account_id"] == account.account_id
    used = await client.post(
        URL, headers=codex_headers(account, token=grant["access_token"]), json=codex_body()
    )
    assert used.status_code == 200
    assert (
        await client.post("/oauth/token", json=refresh_body(grant["refresh_token"]))
    ).status_code == 200
    assert (await client.post("/oauth/token", data=exchange)).json()["error"][
        "code"
    ] == "invalid_grant"
    assert (await client.post("/api/accounts/deviceauth/token", json=poll)).status_code == 404


async def test_device_code_expires_on_the_sim_clock(client: httpx.AsyncClient, app: SimApp) -> None:
    started = (
        await client.post("/api/accounts/deviceauth/usercode", json={"client_id": CLIENT_ID})
    ).json()
    app.sim.clock.advance(started["expires_in"])
    poll = {"device_auth_id": started["device_auth_id"], "user_code": started["user_code"]}
    expired = await client.post("/api/accounts/deviceauth/token", json=poll)
    assert expired.json()["error"]["code"] == "expired_token"


async def test_auth_json_follows_rotation(client: httpx.AsyncClient, account: Account) -> None:
    before = (await client.get(f"/_sim/accounts/{account.name}/auth")).json()
    assert before["auth_mode"] == "chatgpt" and before["OPENAI_API_KEY"] is None
    grant = (
        await client.post("/oauth/token", json=refresh_body(before["tokens"]["refresh_token"]))
    ).json()
    after = (await client.get(f"/_sim/accounts/{account.account_id}/auth")).json()
    assert after["tokens"]["refresh_token"] == grant["refresh_token"]
    assert after["tokens"]["account_id"] == account.account_id
