"""Token lifetimes and client disconnects."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.conftest import EventTap, poll
from tests.e2e.router.conftest import Pool, Sim

STREAM = {"model": "gpt-5-codex", "input": "hi", "stream": True}


@pytest.mark.parametrize("sim_args", [["--access-ttl-s", "200"]])
async def test_tokens_near_expiry_are_refreshed_ahead_once(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1], strategy="primary-first")
    [router] = routers(1)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        for _ in range(5):
            response = await c.post("/v1/responses", json=STREAM)
            assert response.status_code == 200
            assert response.headers["x-codexpool-attempts"] == "1"

    async def refreshed() -> int:
        return int(sim.refreshes()[sim.account_id(1)]["refreshes"])

    assert await poll(refreshed) == 1
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        assert (await c.post("/v1/responses", json=STREAM)).status_code == 200
    stats = sim.refreshes()[sim.account_id(1)]
    assert (stats["refreshes"], stats["reused"]) == (1, 0)


async def test_client_disconnect_cancels_the_upstream_call(
    sim: Sim, pool: Pool, routers, events: EventTap
) -> None:
    await pool.setup(sim, [1], strategy="primary-first")
    [router] = routers(1)
    sim.fault(1, kind="stall_stream", count=1, after_events=2, duration_ms=60_000)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    started = time.monotonic()
    async with (
        httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c,
        c.stream("POST", "/v1/responses", json=STREAM) as response,
    ):
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            assert chunk
            break
    [event] = await events.wait_for("request.outcome.v1", 1)
    assert time.monotonic() - started < 10
    assert event["final_outcome"] == "cancelled"
    assert [a["outcome"] for a in event["attempts"]] == ["cancelled"]
