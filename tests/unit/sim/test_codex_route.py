"""``/backend-api/codex/responses``: what Codex sends is accepted; each check rejects when on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from codexpool_sim.accounts import Account
from codexpool_sim.app import SimApp
from codexpool_sim.config import MismatchPolicy
from tests.unit.sim.helpers import codex_body, codex_headers, sse_events

URL = "/backend-api/codex/responses"


async def test_codex_cli_request_is_accepted_with_every_header(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(URL, headers=codex_headers(account), json=codex_body())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    h = response.headers
    assert h["x-codex-active-limit"] == "codex"
    assert h["x-codex-plan-type"] == "plus"
    for window, minutes in (("primary", "300"), ("secondary", "10080")):
        assert h[f"x-codex-{window}-window-minutes"] == minutes
        assert int(h[f"x-codex-{window}-reset-at"]) > 1_770_000_000
        assert int(h[f"x-codex-{window}-reset-after-seconds"]) == int(minutes) * 60
        assert f"x-codex-{window}-used-percent" in h
    assert (
        h["x-codex-credits-has-credits"],
        h["x-codex-credits-unlimited"],
        h["x-codex-credits-balance"],
    ) == (
        "False",
        "False",
        "0",
    )
    assert h["x-request-id"].startswith("req_")
    events = sse_events(response.text)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert completed["response"]["output"] == []
    assert completed["response"]["usage"]["total_tokens"] == 1290
    assert completed["response"]["id"] == events[0]["response"]["id"]


async def test_codex_route_full_output_when_the_quirk_is_off(
    client: httpx.AsyncClient, account: Account
) -> None:
    account.style.codex_empty_output = False
    response = await client.post(URL, headers=codex_headers(account), json=codex_body())
    output = sse_events(response.text)[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "message"]


async def test_reasoning_item_is_optional(client: httpx.AsyncClient, account: Account) -> None:
    account.style.reasoning = False
    response = await client.post(URL, headers=codex_headers(account), json=codex_body())
    items = [
        e["item"]["type"]
        for e in sse_events(response.text)
        if e["type"] == "response.output_item.done"
    ]
    assert items == ["message"]


async def test_non_streaming_codex_request_gets_json(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(URL, headers=codex_headers(account), json=codex_body(stream=False))
    assert response.status_code == 200
    document = response.json()
    assert document["status"] == "completed"
    assert document["output"][-1]["content"][0]["text"] == "Hello world"


@pytest.mark.parametrize(
    ("switch", "body", "expected"),
    [
        ("require_store_false", {"store": True}, {"detail": "Store must be set to false"}),
        ("require_instructions", {}, {"detail": "Instructions are required"}),
        ("require_stream", {"stream": False}, {"detail": "Stream must be set to true"}),
        (
            "reject_max_output_tokens",
            {"max_output_tokens": 100},
            {"detail": "Unsupported parameter: max_output_tokens"},
        ),
        (
            "check_model",
            {"model": "gpt-4o"},
            {
                "error": {
                    "type": "invalid_request_error",
                    "message": "The 'gpt-4o' model is not supported when using Codex with a "
                    "ChatGPT account.",
                }
            },
        ),
    ],
)
async def test_each_validation_switch_gives_its_400(
    client: httpx.AsyncClient,
    app: SimApp,
    account: Account,
    switch: str,
    body: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    for name in vars(app.sim.validation):
        setattr(app.sim.validation, name, False)
    accepted = await client.post(URL, headers=codex_headers(account), json=codex_body(**body))
    assert accepted.status_code == 200
    response = await client.patch("/_sim/config", json={switch: True})
    assert response.json()[switch] is True
    rejected = await client.post(URL, headers=codex_headers(account), json=codex_body(**body))
    assert rejected.status_code == 400
    assert rejected.json() == expected
    assert account.quota.primary.used_percent == account.quota.primary_cost


async def test_defaults_reject_store_true_and_max_output_tokens(
    client: httpx.AsyncClient, account: Account
) -> None:
    assert (
        await client.post(URL, headers=codex_headers(account), json=codex_body(store=True))
    ).status_code == 400
    capped = codex_body(max_output_tokens=5)
    assert (await client.post(URL, headers=codex_headers(account), json=capped)).status_code == 400
    with_instructions = codex_body(instructions="You are Codex.", model="gpt-4o")
    assert (
        await client.post(URL, headers=codex_headers(account), json=with_instructions)
    ).status_code == 200


async def test_v1_route_does_not_apply_codex_validation(
    client: httpx.AsyncClient, account: Account
) -> None:
    headers = {"authorization": f"Bearer {account.tokens.access_token}"}
    response = await client.post(
        "/v1/responses",
        headers=headers,
        json={"model": "gpt-4o", "input": "hi", "max_output_tokens": 5},
    )
    assert response.status_code == 200


async def test_malformed_body_is_a_400(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.post(URL, headers=codex_headers(account), content=b"{not json")
    assert response.status_code == 400
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("policy", "status"),
    [
        (MismatchPolicy.REJECT_403, 403),
        (MismatchPolicy.REJECT_401, 401),
        (MismatchPolicy.IGNORE, 200),
    ],
)
async def test_account_id_mismatch_is_configurable(
    client: httpx.AsyncClient, app: SimApp, account: Account, policy: MismatchPolicy, status: int
) -> None:
    await client.patch("/_sim/config", json={"account_id_mismatch": policy.value})
    headers = {**codex_headers(account), "chatgpt-account-id": app.accounts[1].account_id}
    response = await client.post(URL, headers=headers, json=codex_body())
    assert response.status_code == status


async def test_unknown_token_is_401_token_invalidated(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        URL, headers=codex_headers(account, token="garbage"), json=codex_body()
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalidated"
    assert response.json()["status"] == 401
    missing = {k: v for k, v in codex_headers(account).items() if k != "authorization"}
    assert (await client.post(URL, headers=missing, json=codex_body())).status_code == 401


async def test_expired_access_token_is_401_token_expired(
    client: httpx.AsyncClient, app: SimApp, account: Account
) -> None:
    app.sim.clock.advance(app.sim.tokens.access_ttl_s + 1)
    response = await client.post(URL, headers=codex_headers(account), json=codex_body())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


async def test_patch_expire_access_token_forces_a_refresh(
    client: httpx.AsyncClient, account: Account
) -> None:
    assert (
        await client.patch(
            f"/_sim/accounts/{account.account_id}", json={"expire_access_token": True}
        )
    ).status_code == 200
    response = await client.post(URL, headers=codex_headers(account), json=codex_body())
    assert response.json()["error"]["code"] == "token_expired"


async def test_revoked_access_token_is_401(client: httpx.AsyncClient, account: Account) -> None:
    await client.post(
        "/oauth/revoke",
        json={"token": account.tokens.access_token, "token_type_hint": "access_token"},
    )
    response = await client.post(URL, headers=codex_headers(account), json=codex_body())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalidated"


async def test_models_list_with_etag(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get(
        "/backend-api/codex/models?client_version=0.169.0", headers=codex_headers(account)
    )
    assert response.status_code == 200
    assert response.headers["etag"]
    slugs = [m["slug"] for m in response.json()["models"]]
    assert "gpt-5-codex" in slugs
    assert {"context_window", "supported_reasoning_levels", "shell_type"} <= set(
        response.json()["models"][0]
    )


async def test_accounts_check_names_the_tokens_account(
    client: httpx.AsyncClient, app: SimApp, account: Account
) -> None:
    response = await client.get("/backend-api/wham/accounts/check", headers=codex_headers(account))
    assert response.json() == {
        "accounts": [
            {
                "id": account.account_id,
                "workspace_backend_origin": "http://sim",
                "account_routing_override": "us",
            }
        ],
        "default_account_id": account.account_id,
    }
    await client.patch("/_sim/config", json={"workspace_backend_origin": "https://sim.example"})
    again = await client.get("/backend-api/wham/accounts/check", headers=codex_headers(account))
    assert again.json()["accounts"][0]["workspace_backend_origin"] == "https://sim.example"


async def test_requests_are_recorded_with_headers_body_and_account(
    client: httpx.AsyncClient, account: Account
) -> None:
    await client.post(URL, headers=codex_headers(account), json=codex_body())
    await client.get("/backend-api/wham/usage", headers=codex_headers(account))
    recorded = (await client.get("/_sim/requests", params={"path": URL})).json()["requests"]
    assert len(recorded) == 1
    entry = recorded[0]
    assert entry["account_id"] == account.account_id
    assert entry["status"] == 200
    assert entry["headers"]["session-id"] == "019e271b-4023-7081-be3e-7a69d97138a2"
    assert entry["body"]["prompt_cache_key"] == "019e271b-4023-7081-be3e-7a69d97138a2"
    assert len((await client.get("/_sim/requests")).json()["requests"]) == 2
    assert (await client.delete("/_sim/requests")).json() == {"cleared": 2}
    assert (await client.get("/_sim/requests")).json()["requests"] == []
