"""A provider whose stored account id cannot travel in a header (written before the admin API
refused such ids, or by hand) costs a failed-over attempt, never a bare 500."""

from __future__ import annotations

import httpx

from codexpool_shared.store.providers import ProviderFields
from tests.e2e.router.conftest import Pool, Sim


async def test_an_injected_account_id_fails_over(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2])
    await pool.redis.hset(
        pool.keys.provider("account-1"), ProviderFields.ACCOUNT_ID, "a\r\nX-Injected: yes"
    )
    [router] = routers(1)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    answers = []
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as client:
        for _ in range(4):
            answers.append(await client.post("/v1/responses", json={"model": "m"}))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert {a.headers["x-codexpool-provider"] for a in answers} == {"account-2"}
    assert "2" in {a.headers["x-codexpool-attempts"] for a in answers}, "account-1 was tried"
    assert not [r for r in sim.requests() if "x-injected" in {k.lower() for k in r["headers"]}]
