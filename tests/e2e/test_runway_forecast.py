# ruff: noqa: F811 - fixtures are imported by name and requested as parameters
"""Router, health, admin API and codex-sim as real processes: with a quota cost per request and
steady traffic, the forecast's ``exhausts_at`` lies within 10 % of when the sim's account
actually reaches 100 %, and ``pool.runway_low.v1`` fires once (the window resets hours later)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx

from tests.e2e.conftest import EventTap, events  # noqa: F401
from tests.e2e.health_stack import Stack, stack  # noqa: F401

ADMIN_TOKEN = "e2e-runway-admin-token-0123456789abcdef"
REQUEST = {"model": "gpt-5-codex", "input": "hi", "stream": False}
COST = 2.0  # primary percent per request: 50 requests from 0 to 100 %
PERIOD_S = 0.5  # one request every 500 ms: 100 % after 25 s


async def test_exhaustion_is_forecast_within_ten_percent_and_announced_once(
    stack: Stack, events: EventTap
) -> None:
    upstream = stack.upstream
    upstream.patch(1, primary_cost_percent=COST, secondary_cost_percent=0)
    await stack.pool([1])
    stack.start("codexpool_health", HEALTH_FORECAST_INTERVAL_S="0.5", HEALTH_BATCH_LINGER_MS="1")
    router = stack.start("codexpool_router")
    admin_api = stack.start("codexpool_admin_api", CODEXPOOL_ADMIN_TOKEN=ADMIN_TOKEN)
    key = {"Authorization": f"Bearer {stack.api_key}"}
    admin_headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    path = f"/api/agents/{stack.agent_id}/codex-pool/forecast"
    forecasts: list[tuple[float, dict[str, Any]]] = []
    reached_100: float | None = None
    async with (
        httpx.AsyncClient(base_url=router.url, headers=key, timeout=30) as client,
        httpx.AsyncClient(base_url=admin_api.url, headers=admin_headers, timeout=10) as admin,
    ):
        started = time.monotonic()
        for n in range(1, 60):
            # Steady traffic: request n is due at n * PERIOD_S, whatever the previous took.
            await asyncio.sleep(max(0.0, started + n * PERIOD_S - time.monotonic()))
            response = await client.post("/v1/responses", json=REQUEST)
            if response.status_code == 429:
                break
            assert response.status_code == 200, response.text
            if n * COST >= 100 and reached_100 is None:
                reached_100 = time.time()  # the sim charged the 50th request: 100 %
            if n * COST == 50:  # 12.5 s of samples behind (the model wants 10 s at least)
                forecasts.append((time.time(), (await admin.get(path)).json()))
        assert reached_100 is not None

        at, body = forecasts[0]
        (row,) = [r for r in body["providers"] if r["window"] == "primary"]
        assert row["provider"] == "account-1" and row["burn_percent_per_hour"] is not None
        # 2 % every 500 ms: 14 400 %/h.
        rate = COST / PERIOD_S * 3600
        assert abs(row["burn_percent_per_hour"] - rate) / rate < 0.1
        exhausts = datetime.fromisoformat(row["exhausts_at"]).timestamp()
        assert abs(exhausts - reached_100) <= 0.1 * (reached_100 - at), (exhausts, reached_100)
        pool = body["pool"]
        assert pool["limited_by"] == "primary" and pool["before_reset"] is True
        assert abs(datetime.fromisoformat(pool["exhausts_at"]).timestamp() - reached_100) <= (
            0.1 * (reached_100 - at)
        )

        low = await events.wait_for("pool.runway_low.v1", 1)
        assert low[0]["agent_id"] == stack.agent_id and low[0]["limited_by"] == "primary"
        # Four more forecasts of the same episode (0.5 s apart): still one event. Seeing that
        # nothing happens takes a bounded wait; the episode key shows the forecasts went on.
        await asyncio.sleep(2.5)
        assert len(events.of_type("pool.runway_low.v1")) == 1
        assert await stack.redis.ttl(stack.keys.runway_low(stack.agent_id)) > 86_000
