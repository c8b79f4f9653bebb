"""primary-first recovery without flapping, and quota-aware draining accounts evenly."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.e2e.router.conftest import Pool, Sim

STREAM = {"model": "gpt-5-codex", "input": "hi", "stream": True}


async def test_primary_first_returns_only_after_a_successful_probe(
    sim: Sim, pool: Pool, routers
) -> None:
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(1, ROUTER_CIRCUIT_FAILURES="2", ROUTER_CIRCUIT_BASE_S="1")
    sim.fault(1, kind="http_error", status=500, count=3)
    served: list[tuple[str, str]] = []
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = await c.post("/v1/responses", json=STREAM)
            assert response.status_code == 200
            served.append(
                (response.headers["x-codexpool-provider"], response.headers["x-codexpool-attempts"])
            )
            if len(served) > 3 and served[-1][0] == "account-1":
                break
            await asyncio.sleep(0.1)
        for _ in range(10):
            response = await c.post("/v1/responses", json=STREAM)
            served.append((response.headers["x-codexpool-provider"], "after"))
    providers = [p for p, _ in served]
    back = providers.index("account-1")
    assert back > 2, served
    assert set(providers[:back]) == {"account-2"}
    assert set(providers[back:]) == {"account-1"}, served
    # Three upstream failures: two opened the circuit, one failed probe re-opened it.
    assert sum(1 for _, attempts in served if attempts == "2") == 3, served


async def test_quota_aware_drains_accounts_evenly(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2, 3], strategy="quota-aware")
    [router] = routers(1)
    for n, start in ((1, 60), (2, 20), (3, 40)):
        sim.patch(n, primary_used_percent=start, primary_cost_percent=1, secondary_cost_percent=0)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        for _ in range(90):
            response = await c.post("/v1/responses", json=STREAM)
            assert response.status_code == 200
            await asyncio.sleep(0.02)
    accounts = sim.client.get("/_sim/accounts").json()["accounts"]
    used = {a["name"]: a["quota"]["primary"]["used_percent"] for a in accounts}
    assert all(abs(u - 70) <= 8 for u in used.values()), used
