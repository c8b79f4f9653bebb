"""The seed's example: a pool of two accounts, round-robin, one failing."""

from __future__ import annotations

import httpx

from tests.e2e.router.conftest import Pool, Sim

BODY = {"model": "gpt-5-codex", "input": "hi", "stream": True}


async def test_round_robin_alternates_and_fails_over(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2])
    [router] = routers(1)
    headers = {"Authorization": f"Bearer {pool.api_key}", "Host": "evil.example"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=20) as client:
        served = []
        for _ in range(6):
            response = await client.post("/v1/responses", json=BODY)
            assert response.status_code == 200, response.text
            assert "response.completed" in response.text
            served.append(response.headers["x-codexpool-provider"])
        assert served in (["account-1", "account-2"] * 3, ["account-2", "account-1"] * 3)
        assert sim.served_by() == served
        assert "x-codex-primary-used-percent" in response.headers
        for recorded in sim.requests():
            assert pool.api_key not in recorded["headers"]["authorization"]
            assert recorded["headers"]["chatgpt-account-id"] == recorded["account_id"]
            assert recorded["body"]["store"] is False and recorded["body"]["stream"] is True

        sim.fault(1, kind="http_error", status=500, count=1000)
        for _ in range(6):
            response = await client.post("/v1/responses", json=BODY)
            assert response.status_code == 200, response.text
            assert response.headers["x-codexpool-provider"] == "account-2"
