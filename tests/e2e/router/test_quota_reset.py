"""Fresh quota ends a quota cooldown (issue 19): an account the upstream resets early is back in
rotation on every replica within one poll interval; without the reset it stays out."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.e2e.router.conftest import Pool, Sim

BODY = {"model": "gpt-5-codex", "input": "hi"}
POLL_S = 1.0


async def _served(clients: list[httpx.AsyncClient], rounds: int) -> list[str]:
    """Who served each of ``rounds`` requests on each replica (all must succeed)."""
    served = []
    for _ in range(rounds):
        for client in clients:
            response = await client.post("/v1/responses", json=BODY)
            assert response.status_code == 200, response.text
            served.append(response.headers["x-codexpool-provider"])
    return served


def _usage_reads(sim: Sim, n: int) -> int:
    account = sim.account_id(n)
    return sum(1 for r in sim.requests("/backend-api/wham/usage") if r["account_id"] == account)


async def test_an_early_reset_brings_the_account_back_on_every_replica(
    sim: Sim, pool: Pool, routers
) -> None:
    await pool.setup(sim, [1, 2])
    sim.client.patch(
        "/_sim/accounts", json={"primary_cost_percent": 0, "secondary_cost_percent": 0}
    ).raise_for_status()
    sim.patch(1, primary_used_percent=100, primary_reset_after_seconds=3 * 3600)
    replicas = routers(2, ROUTER_QUOTA_POLL_S=str(POLL_S))
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    clients = [httpx.AsyncClient(base_url=r.url, headers=headers, timeout=30) for r in replicas]
    try:
        # The first request that meets account-1's 429 cools it down for three hours.
        await _served(clients, 2)
        # Without an early reset the poll keeps finding it full: it stays out, round after
        # round (three usage reads of it prove three polls happened, whichever replica ran them).
        deadline = time.monotonic() + 20 * POLL_S
        while _usage_reads(sim, 1) < 3:
            assert "account-1" not in await _served(clients, 1)
            assert time.monotonic() < deadline, "the poll never read account-1's usage"
            await asyncio.sleep(0.1)
        assert "account-1" not in await _served(clients, 3)
        assert _usage_reads(sim, 2) == 0  # only members cooling down for quota are polled

        sim.patch(1, primary_used_percent=0)  # the upstream's early reset
        reset_at = time.monotonic()
        back: set[int] = set()
        while len(back) < len(clients):
            for i, client in enumerate(clients):
                # Two in a row on one replica: the shared rotation gives each member one of them
                # (alternating replicas would pair each replica with one member).
                if "account-1" in await _served([client], 2):
                    back.add(i)
            # One poll interval, plus the lock's phase between replicas and a round of reads.
            assert time.monotonic() - reset_at < 3 * POLL_S, f"replicas back: {back}"
            await asyncio.sleep(0.05)
    finally:
        for client in clients:
            await client.aclose()
