"""The ``/_sim`` admin contract of docs/SPEC.md §10 beyond faults."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from codexpool_sim.accounts import Account, write_auth_files
from codexpool_sim.app import SimApp, create_app
from codexpool_sim.config import SimConfig
from codexpool_sim.tokens import AUTH_CLAIM, PROFILE_CLAIM, decode_jwt
from tests.unit.sim.conftest import START
from tests.unit.sim.helpers import codex_body, codex_headers

URL = "/backend-api/codex/responses"


async def test_accounts_list_with_quota_state(client: httpx.AsyncClient, app: SimApp) -> None:
    listed = (await client.get("/_sim/accounts")).json()["accounts"]
    assert [a["account_id"] for a in listed] == [a.account_id for a in app.accounts]
    first = listed[0]
    assert first["name"] == "account-1" and first["plan_type"] == "plus"
    assert first["quota"]["primary"] == {
        "used_percent": 0.0,
        "window_minutes": 300,
        "reset_at": int(START) + 18000,
        "reset_after_seconds": 18000,
    }
    assert first["quota"]["limit_reached"] is False
    assert first["access_token_usable"] is True
    assert "access_token" not in first and "refresh_token" not in first


async def test_patch_fields_take_effect(client: httpx.AsyncClient, account: Account) -> None:
    patch = {
        "primary_used_percent": 40,
        "secondary_used_percent": 60,
        "plan_type": "pro",
        "ttfb_ms": 0,
        "event_delay_ms": 0,
        "response_text": "patched text",
        "usage": {"input_tokens": 10, "output_tokens": 5},
        "credits_has_credits": True,
        "credits_balance": "9.99",
    }
    view = (await client.patch(f"/_sim/accounts/{account.name}", json=patch)).json()
    assert view["plan_type"] == "pro" and view["response_text"] == "patched text"
    assert view["usage"]["total_tokens"] == 15
    response = await client.post(URL, headers=codex_headers(account), json=codex_body(stream=False))
    h = response.headers
    assert h["x-codex-plan-type"] == "pro"
    assert h["x-codex-primary-used-percent"] == "40.5"
    assert h["x-codex-secondary-used-percent"] == "60.05"
    assert (h["x-codex-credits-has-credits"], h["x-codex-credits-balance"]) == ("True", "9.99")
    assert response.json()["output"][-1]["content"][0]["text"] == "patched text"
    assert response.json()["usage"]["total_tokens"] == 15


async def test_patch_all_accounts(client: httpx.AsyncClient, app: SimApp) -> None:
    listed = (
        await client.patch("/_sim/accounts", json={"ttfb_ms": 25, "primary_cost_percent": 0})
    ).json()
    assert {a["ttfb_ms"] for a in listed["accounts"]} == {25}
    assert all(a.quota.primary_cost == 0 for a in app.accounts)


async def test_patch_refuses_unknown_fields_and_bad_values(
    client: httpx.AsyncClient, account: Account
) -> None:
    unknown = await client.patch(f"/_sim/accounts/{account.account_id}", json={"primary_used": 1})
    assert unknown.status_code == 400
    assert unknown.json()["detail"][0]["field"] == "primary_used"
    bad = await client.patch(
        f"/_sim/accounts/{account.account_id}", json={"primary_used_percent": 101}
    )
    assert bad.status_code == 400
    assert bad.json()["detail"][0]["field"] == "primary_used_percent"
    assert (await client.patch("/_sim/accounts/nobody", json={})).status_code == 404
    assert (
        await client.patch(f"/_sim/accounts/{account.account_id}", content=b"{")
    ).status_code == 400


async def test_secondary_window_can_be_removed_and_resized(
    client: httpx.AsyncClient, account: Account
) -> None:
    removed = (
        await client.patch(
            f"/_sim/accounts/{account.account_id}", json={"secondary_window_minutes": 0}
        )
    ).json()
    assert removed["quota"]["secondary"] is None
    resized = await client.patch(
        f"/_sim/accounts/{account.account_id}",
        json={"primary_window_minutes": 60, "secondary_window_minutes": 1440},
    )
    assert resized.json()["quota"]["primary"]["window_minutes"] == 60
    assert resized.json()["quota"]["secondary"]["window_minutes"] == 1440


async def test_new_account_at_runtime(client: httpx.AsyncClient, app: SimApp) -> None:
    created = await client.post("/_sim/accounts", json={"plan_type": "free"})
    assert created.status_code == 201
    document = created.json()
    assert document["name"] == "account-4" and document["plan_type"] == "free"
    token = document["auth_json"]["tokens"]["access_token"]
    usage = await client.get(
        "/backend-api/wham/usage", headers={"authorization": f"Bearer {token}"}
    )
    assert usage.json()["plan_type"] == "free"


async def test_clock_set_advance_and_freeze(client: httpx.AsyncClient) -> None:
    assert (await client.get("/_sim/clock")).json() == {"now": START, "frozen": True}
    moved = await client.post("/_sim/clock", json={"set_now": START + 100, "advance_s": 5})
    assert moved.json()["now"] == START + 105
    thawed = await client.post("/_sim/clock", json={"frozen": False})
    assert thawed.json()["frozen"] is False and thawed.json()["now"] >= START + 105


async def test_config_lists_every_switch(client: httpx.AsyncClient) -> None:
    assert (await client.get("/_sim/config")).json() == {
        "require_store_false": True,
        "require_instructions": False,
        "require_stream": False,
        "reject_max_output_tokens": True,
        "check_model": False,
        "account_id_mismatch": "reject_403",
        "reuse_revokes_family": True,
        "workspace_backend_origin": None,
        "device_interval_s": 5,
    }
    assert (
        await client.patch("/_sim/config", json={"account_id_mismatch": "sometimes"})
    ).status_code == 400


async def test_request_ring_is_bounded_and_filterable() -> None:
    app = create_app(SimConfig(accounts=1, record_limit=3))
    only = app.accounts[0]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://sim"
    ) as client:
        for _ in range(5):
            await client.post(URL, headers=codex_headers(only), json=codex_body())
        recorded = (await client.get("/_sim/requests")).json()["requests"]
        assert [r["seq"] for r in recorded] == [3, 4, 5]
        assert (
            len((await client.get("/_sim/requests", params={"limit": 1})).json()["requests"]) == 1
        )
        assert (await client.get("/_sim/requests", params={"account_id": "other"})).json()[
            "requests"
        ] == []


async def test_probes_and_metrics(client: httpx.AsyncClient, account: Account) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    await client.post(URL, headers=codex_headers(account), json=codex_body())
    metrics = (await client.get("/metrics")).text
    assert 'codexpool_sim_responses_total{account="account-1"} 1' in metrics
    assert 'codexpool_sim_primary_used_percent{account="account-1"} 0.5' in metrics
    assert 'codexpool_sim_refreshes_total{account="account-2"} 0' in metrics


def test_auth_files_are_codex_auth_json(tmp_path: Path, app: SimApp) -> None:
    paths = write_auth_files(app.accounts, tmp_path)
    assert [p.name for p in paths] == [
        "account-1.auth.json",
        "account-2.auth.json",
        "account-3.auth.json",
    ]
    assert paths[0].stat().st_mode & 0o777 == 0o600
    document = json.loads(paths[0].read_text())
    account = app.accounts[0]
    assert set(document) == {"auth_mode", "OPENAI_API_KEY", "tokens", "last_refresh"}
    assert document["tokens"]["account_id"] == account.account_id
    assert document["last_refresh"].endswith("Z")
    for name in ("id_token", "access_token"):
        claims = decode_jwt(document["tokens"][name])
        assert claims[AUTH_CLAIM]["chatgpt_account_id"] == account.account_id
        assert claims[AUTH_CLAIM]["chatgpt_plan_type"] == "plus"
        assert claims[PROFILE_CLAIM]["email"] == account.email
        assert claims["exp"] > START
    summary = json.loads((tmp_path / "accounts.json").read_text())["accounts"]
    assert [s["account_id"] for s in summary] == [a.account_id for a in app.accounts]


def test_seed_makes_account_ids_reproducible() -> None:
    first = [a.account_id for a in create_app(SimConfig(seed=1)).accounts]
    again = [a.account_id for a in create_app(SimConfig(seed=1)).accounts]
    other = [a.account_id for a in create_app(SimConfig(seed=2)).accounts]
    assert first == again != other
