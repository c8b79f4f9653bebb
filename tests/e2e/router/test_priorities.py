"""Member priorities through a real router and codex-sim (issue 20)."""

from __future__ import annotations

import httpx

from codexpool_shared.store import put_pool
from tests.e2e.router.conftest import Pool, Sim

BODY = {"model": "gpt-5-codex", "input": "hi"}


async def test_a_preserve_member_serves_only_once_the_others_are_exhausted(
    sim: Sim, pool: Pool, routers
) -> None:
    await pool.setup(sim, [1, 2, 3])
    await put_pool(
        pool.redis,
        pool.keys,
        pool.agent_id,
        "round-robin",
        pool.providers,
        priorities={"account-3": "preserve"},
    )
    [router] = routers(1)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        for _ in range(12):
            response = await c.post("/v1/responses", json=BODY)
            assert response.status_code == 200
        assert sorted(set(sim.served_by())) == ["account-1", "account-2"]
        for n in (1, 2):
            sim.patch(n, primary_used_percent=100, primary_reset_after_seconds=600)
        served = []
        for _ in range(6):
            response = await c.post("/v1/responses", json=BODY)
            assert response.status_code == 200
            served.append(response.headers["x-codexpool-provider"])
    # The exhausted accounts each answer one 429 (and are cooled down); then only account-3.
    assert served == ["account-3"] * 6, served
    assert sim.served_by()[12:].count("account-3") == 6
