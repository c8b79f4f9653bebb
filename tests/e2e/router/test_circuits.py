"""Circuits that count honestly and the retry budget, against real routers and codex-sim."""

from __future__ import annotations

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from codexpool_shared.store import LiveState, get_live
from tests.e2e.conftest import poll
from tests.e2e.router.conftest import Pool, Sim

STREAM = {"model": "gpt-5-codex", "input": "hi", "stream": True}
# Only the consecutive-failure streak opens circuits here (no health service runs).
NO_SCORES = {"ROUTER_HEALTH_THRESHOLD": "0"}


def client(router, pool: Pool) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    return httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30)


async def counter(router, name: str, **labels: str) -> float:
    """A counter's value on one router's /metrics (0 when it has no sample yet)."""
    async with httpx.AsyncClient(base_url=router.url, timeout=10) as c:
        text = (await c.get("/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_always_failing_account_backs_off_30_60_120_with_one_probe_per_expiry(
    sim: Sim, pool: Pool, routers
) -> None:
    """Scaled down: base 0.5 s, so the ejections last 0.5, 1 and 2 s."""
    await pool.setup(sim, [1, 2], strategy="primary-first")
    replicas = routers(
        2,
        ROUTER_CIRCUIT_FAILURES="3",
        ROUTER_CIRCUIT_BASE_S="0.5",
        ROUTER_CIRCUIT_MAX_S="60",
        **NO_SCORES,
    )
    sim.fault(1, kind="http_error", status=500, probability=1.0)
    # Hundreds of requests must not spend account-2's quota.
    sim.patch(2, primary_cost_percent=0, secondary_cost_percent=0)
    openings: dict[int, LiveState] = {}

    async def drive(router) -> None:
        async with client(router, pool) as c:
            while len(openings) < 3:
                response = await c.post("/v1/responses", json=STREAM)
                assert response.status_code == 200, response.text
                assert response.headers["x-codexpool-provider"] == "account-2"
                await asyncio.sleep(0.02)

    async def watch() -> None:
        deadline = time.monotonic() + 20
        while len(openings) < 3 and time.monotonic() < deadline:
            live = await get_live(pool.redis, pool.keys, "account-1")
            if live.circuit_opens and live.circuit_open_until_ms:
                openings.setdefault(live.circuit_opens, live)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(asyncio.gather(watch(), *(drive(r) for r in replicas)), 25)
    assert sorted(openings) == [1, 2, 3], openings
    durations = [o.circuit_open_until_ms - o.circuit_opened_at_ms for o in openings.values()]
    assert durations == [500, 1000, 2000]
    # Each expiry was probed by one replica only: two probes for the two re-openings.
    probes = [
        await counter(r, "codexpool_router_circuit_transitions_total", transition="probe")
        for r in replicas
    ]
    assert sum(probes) == 2, probes
    assert (await get_live(pool.redis, pool.keys, "account-1")).circuit_opens == 3


async def test_late_failures_of_a_stall_do_not_escalate_the_backoff(
    sim: Sim, pool: Pool, routers
) -> None:
    """Eight requests stall on account-1 together: two failures open its circuit, the six that
    time out after it opened started before it and must not re-open it."""
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(
        1,
        ROUTER_TTFB_TIMEOUT_S="1",
        ROUTER_CIRCUIT_FAILURES="2",
        ROUTER_CIRCUIT_BASE_S="20",
        ROUTER_RETRY_BUDGET_PERCENT="100",
        **NO_SCORES,
    )
    sim.fault(1, kind="stall_headers", probability=1.0, duration_ms=10_000)
    async with client(router, pool) as c:
        responses = await asyncio.gather(*(c.post("/v1/responses", json=STREAM) for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert {r.headers["x-codexpool-provider"] for r in responses} == {"account-2"}

    async def settled() -> LiveState | None:
        # Every failure's write has landed once nothing changes any more.
        first = await get_live(pool.redis, pool.keys, "account-1")
        await asyncio.sleep(0.3)
        second = await get_live(pool.redis, pool.keys, "account-1")
        return second if second == first and second.circuit_opens else None

    live = await poll(settled, timeout_s=10)
    assert live.circuit_opens == 1
    assert live.circuit_open_until_ms - live.circuit_opened_at_ms == 20_000
    assert live.failures == 0


async def test_a_stall_with_others_in_flight_opens_the_circuit_at_once(
    sim: Sim, pool: Pool, routers
) -> None:
    """Three requests stall on account-1 together, far below the streak of five: the first
    timeout opens its circuit, so the requests that come after them go straight to account-2."""
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(
        1,
        ROUTER_TTFB_TIMEOUT_S="1",
        ROUTER_CIRCUIT_FAILURES="5",
        ROUTER_CIRCUIT_BASE_S="20",
        **NO_SCORES,
    )
    sim.fault(1, kind="stall_headers", probability=1.0, duration_ms=10_000)
    async with client(router, pool) as c:
        stalled = await asyncio.gather(*(c.post("/v1/responses", json=STREAM) for _ in range(3)))
        assert [r.headers["x-codexpool-attempts"] for r in stalled] == ["2"] * 3

        async def opened() -> LiveState | None:
            live = await get_live(pool.redis, pool.keys, "account-1")
            return live if live.circuit_opens else None

        live = await poll(opened, timeout_s=5)
        after = [await c.post("/v1/responses", json=STREAM) for _ in range(3)]
    assert [r.headers["x-codexpool-attempts"] for r in after] == ["1"] * 3
    assert {r.headers["x-codexpool-provider"] for r in after} == {"account-2"}
    assert live.circuit_open_until_ms - live.circuit_opened_at_ms == 20_000
    assert (await get_live(pool.redis, pool.keys, "account-1")).circuit_opens == 1


async def test_brownout_is_bounded_by_the_retry_budget(sim: Sim, pool: Pool, routers) -> None:
    """Two of three accounts fail half their requests: failovers stay within 20 % of the
    requests plus the floor, and the requests the budget refuses are told not to retry."""
    await pool.setup(sim, [1, 2, 3], strategy="round-robin")
    [router] = routers(
        1,
        ROUTER_RETRY_BUDGET_PERCENT="20",
        ROUTER_RETRY_BUDGET_MIN_PER_S="0.2",
        ROUTER_RETRY_BUDGET_WINDOW_S="60",
        # No ejection: the budget alone must bound the attempts.
        ROUTER_CIRCUIT_FAILURES="1000",
        **NO_SCORES,
    )
    for n in (1, 2):
        sim.fault(n, kind="http_error", status=500, probability=0.5)
    requests = 150
    responses: list[httpx.Response] = []
    async with client(router, pool) as c:

        async def worker(share: int) -> None:
            for _ in range(share):
                responses.append(await c.post("/v1/responses", json=STREAM))

        await asyncio.gather(*(worker(requests // 3) for _ in range(3)))
    attempts = len(sim.requests())
    # 20 % of 150 requests plus 0.2/s over the 60 s window.
    bound = requests + int(requests * 0.2 + 0.2 * 60)
    assert sum(int(r.headers["x-codexpool-attempts"]) for r in responses) == attempts
    assert requests < attempts <= bound, (attempts, bound)
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "the budget never bound"
    for response in refused:
        assert response.headers["x-should-retry"] == "false"
        assert response.json()["error"]["code"] == "retry_budget_exhausted"
    exhausted = await counter(router, "codexpool_router_retry_budget_exhausted_total")
    assert exhausted == len(refused)
    assert all(r.status_code in (200, 503) for r in responses)
