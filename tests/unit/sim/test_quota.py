"""Quota arithmetic, the §5.3 429, window resets on the injected clock, the free plan."""

from __future__ import annotations

import httpx
import pytest

from codexpool_sim.accounts import Account
from codexpool_sim.app import SimApp
from tests.unit.sim.conftest import START
from tests.unit.sim.helpers import codex_body, codex_headers

URL = "/backend-api/codex/responses"


async def _patch(
    client: httpx.AsyncClient, account: Account, **fields: object
) -> dict[str, object]:
    response = await client.patch(f"/_sim/accounts/{account.account_id}", json=fields)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


@pytest.mark.parametrize(
    ("cost", "n", "expected"), [(5.0, 3, "15"), (2.5, 5, "12.5"), (0.1, 3, "0.3")]
)
async def test_n_requests_at_cost_c(
    client: httpx.AsyncClient, account: Account, cost: float, n: int, expected: str
) -> None:
    await _patch(client, account, primary_cost_percent=cost, secondary_cost_percent=1)
    for _ in range(n):
        response = await client.post(URL, headers=codex_headers(account), json=codex_body())
        assert response.status_code == 200
    assert response.headers["x-codex-primary-used-percent"] == expected
    assert response.headers["x-codex-secondary-used-percent"] == str(n)
    usage = (await client.get("/backend-api/wham/usage", headers=codex_headers(account))).json()
    assert usage["rate_limit"]["primary_window"]["used_percent"] == round(cost * n)
    assert usage["rate_limit"]["secondary_window"]["used_percent"] == n
    assert usage["rate_limit"]["allowed"] is True


async def test_usage_document_shape(client: httpx.AsyncClient, account: Account) -> None:
    usage = (await client.get("/backend-api/wham/usage", headers=codex_headers(account))).json()
    assert usage == {
        "plan_type": "plus",
        "rate_limit": {
            "allowed": True,
            "limit_reached": False,
            "primary_window": {
                "used_percent": 0,
                "limit_window_seconds": 18000,
                "reset_after_seconds": 18000,
                "reset_at": int(START) + 18000,
            },
            "secondary_window": {
                "used_percent": 0,
                "limit_window_seconds": 604800,
                "reset_after_seconds": 604800,
                "reset_at": int(START) + 604800,
            },
        },
        "credits": {
            "has_credits": False,
            "unlimited": False,
            "balance": "0",
            "approx_local_messages": [],
            "approx_cloud_messages": [],
        },
        "additional_rate_limits": [],
        "rate_limit_reached_type": None,
    }


async def test_exhausted_window_answers_usage_limit_reached(
    client: httpx.AsyncClient, account: Account
) -> None:
    await _patch(client, account, primary_cost_percent=50, secondary_cost_percent=10)
    for _ in range(2):
        assert (
            await client.post(URL, headers=codex_headers(account), json=codex_body())
        ).status_code == 200
    refused = await client.post(URL, headers=codex_headers(account), json=codex_body())
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    h = refused.headers
    assert h["x-codex-primary-used-percent"] == "100"
    assert h["x-codex-secondary-used-percent"] == "20"
    assert h["x-codex-primary-reset-at"] == str(int(START) + 18000)
    assert h["x-codex-primary-reset-after-seconds"] == "18000"
    assert h["x-codex-plan-type"] == "plus" and h["x-codex-active-limit"] == "codex"
    assert refused.json() == {
        "error": {
            "type": "usage_limit_reached",
            "message": "The usage limit has been reached",
            "plan_type": "plus",
            "resets_at": int(START) + 18000,
            "eligible_promo": None,
            "resets_in_seconds": 18000,
        }
    }
    usage = (await client.get("/backend-api/wham/usage", headers=codex_headers(account))).json()
    assert usage["rate_limit"]["limit_reached"] is True
    assert usage["rate_limit_reached_type"] == "rate_limit_reached"


async def test_requests_succeed_again_after_the_window_resets(
    client: httpx.AsyncClient, app: SimApp, account: Account
) -> None:
    await _patch(client, account, primary_used_percent=100)
    assert (
        await client.post(URL, headers=codex_headers(account), json=codex_body())
    ).status_code == 429
    clock = await client.post("/_sim/clock", json={"advance_s": 18000})
    assert clock.json()["now"] == START + 18000
    again = await client.post(URL, headers=codex_headers(account), json=codex_body())
    assert again.status_code == 200
    assert again.headers["x-codex-primary-used-percent"] == "0.5"
    assert again.headers["x-codex-primary-reset-at"] == str(int(START) + 36000)


async def test_secondary_window_exhaustion_resets_with_the_secondary(
    client: httpx.AsyncClient, account: Account
) -> None:
    await _patch(client, account, secondary_used_percent=100, secondary_reset_after_seconds=7200)
    refused = await client.post(URL, headers=codex_headers(account), json=codex_body())
    assert refused.json()["error"]["resets_at"] == int(START) + 7200
    await client.post("/_sim/clock", json={"advance_s": 7200})
    assert (
        await client.post(URL, headers=codex_headers(account), json=codex_body())
    ).status_code == 200


async def test_other_accounts_keep_their_own_quota(client: httpx.AsyncClient, app: SimApp) -> None:
    first, second = app.accounts[0], app.accounts[1]
    await _patch(client, first, primary_used_percent=100)
    assert (
        await client.post(URL, headers=codex_headers(first), json=codex_body())
    ).status_code == 429
    assert (
        await client.post(URL, headers=codex_headers(second), json=codex_body())
    ).status_code == 200


async def test_free_plan_reports_a_single_weekly_window(
    client: httpx.AsyncClient, account: Account
) -> None:
    view = await _patch(client, account, plan_type="free")
    assert view["quota"]["secondary"] is None  # type: ignore[index]
    response = await client.post(URL, headers=codex_headers(account), json=codex_body())
    assert response.headers["x-codex-plan-type"] == "free"
    assert response.headers["x-codex-primary-window-minutes"] == "10080"
    assert not any(name.startswith("x-codex-secondary") for name in response.headers)
    usage = (await client.get("/backend-api/wham/usage", headers=codex_headers(account))).json()
    assert usage["plan_type"] == "free"
    assert usage["rate_limit"]["secondary_window"] is None
    assert usage["rate_limit"]["primary_window"]["limit_window_seconds"] == 604800


async def test_free_plan_accounts_from_the_config() -> None:
    from codexpool_sim.app import create_app
    from codexpool_sim.config import SimConfig

    app = create_app(SimConfig(accounts=3, plans=("plus", "free")))
    assert [a.plan_type for a in app.accounts] == ["plus", "free", "plus"]
    assert app.accounts[1].quota.secondary is None
