"""Each outcome class of protocol section 9, driven by codex-sim faults."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from codexpool_shared.store import get_live, get_provider, read_credentials
from tests.e2e.conftest import EventTap, poll
from tests.e2e.router.conftest import Pool, Sim

STREAM = {"model": "gpt-5-codex", "input": "hi", "stream": True}


def client(router, pool: Pool) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    return httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30)


async def test_usage_limit_cools_down_and_fails_over(
    sim: Sim, pool: Pool, routers, events: EventTap
) -> None:
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(1)
    sim.fault(1, kind="usage_limit", count=1)
    async with client(router, pool) as c:
        response = await c.post("/v1/responses", json=STREAM)
        assert response.status_code == 200
        assert response.headers["x-codexpool-provider"] == "account-2"
        assert response.headers["x-codexpool-attempts"] == "2"
        live = await poll(lambda: _cooling(pool, "account-1"))
        assert live.cooldown_reason == "usage_limit"
        assert live.cooldown_until_ms > time.time() * 1000 + 60_000
        again = await c.post("/v1/responses", json=STREAM)
        assert again.headers["x-codexpool-attempts"] == "1"
        assert again.headers["x-codexpool-provider"] == "account-2"
    [first, _] = await events.wait_for("request.outcome.v1", 2)
    assert [a["outcome"] for a in first["attempts"]] == ["usage_limit", "success"]
    assert [a["fallback"] for a in first["attempts"]] == [False, True]
    assert first["final_provider"] == "account-2" and first["final_outcome"] == "success"
    assert first["request_id"] == response.headers["x-request-id"]
    assert first["traceparent"]
    assert (await get_live(pool.redis, pool.keys, "account-1")).failures == 0


async def _cooling(pool: Pool, name: str):
    live = await get_live(pool.redis, pool.keys, name)
    return live if live.cooldown_until_ms else None


async def test_server_errors_fail_over_and_open_the_circuit(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(1, ROUTER_CIRCUIT_FAILURES="2", ROUTER_CIRCUIT_BASE_S="60")
    sim.fault(1, kind="http_error", status=502, count=100)
    async with client(router, pool) as c:
        for _ in range(2):
            response = await c.post("/v1/responses", json=STREAM)
            assert response.status_code == 200
            assert response.headers["x-codexpool-attempts"] == "2"

        async def opened():
            live = await get_live(pool.redis, pool.keys, "account-1")
            return live.circuit_open_until_ms > time.time() * 1000

        await poll(opened)
        response = await c.post("/v1/responses", json=STREAM)
        assert response.headers["x-codexpool-attempts"] == "1"
        assert response.headers["x-codexpool-provider"] == "account-2"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"kind": "rate_limit", "retry_after_s": 30}, "rate_limited"),
        ({"kind": "cloudflare_403"}, None),
        ({"kind": "response_failed", "code": "server_error"}, None),
    ],
)
async def test_other_failures_fail_over(
    sim: Sim, pool: Pool, routers, fault: dict[str, Any], reason: str | None
) -> None:
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(1)
    sim.fault(1, count=1, **fault)
    async with client(router, pool) as c:
        response = await c.post("/v1/responses", json={**STREAM, "stream": False})
        assert response.status_code == 200, response.text
        assert response.headers["x-codexpool-provider"] == "account-2"
        assert response.json()["status"] == "completed"
    if reason:
        live = await poll(lambda: _cooling(pool, "account-1"))
        assert live.cooldown_reason == reason


async def test_expired_token_is_refreshed_once_and_retried(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(1)
    sim.patch(1, expire_access_token=True)
    async with client(router, pool) as c:
        response = await c.post("/v1/responses", json=STREAM)
        assert response.status_code == 200
        assert response.headers["x-codexpool-provider"] == "account-1"
        assert response.headers["x-codexpool-attempts"] == "2"
    stats = sim.refreshes()[sim.account_id(1)]
    assert (stats["refreshes"], stats["reused"]) == (1, 0)
    creds = await read_credentials(pool.redis, pool.keys, "account-1")
    assert creds.credential_version == 2


async def test_refused_refresh_marks_needs_reauth(
    sim: Sim, pool: Pool, routers, events: EventTap
) -> None:
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(1)
    sim.patch(1, expire_access_token=True, refresh_token_state="invalidated")
    async with client(router, pool) as c:
        response = await c.post("/v1/responses", json=STREAM)
        assert response.status_code == 200
        assert response.headers["x-codexpool-provider"] == "account-2"
    assert (await get_provider(pool.redis, pool.keys, "account-1")).status == "needs_reauth"
    [changed] = await events.wait_for("provider.status_changed.v1", 1)
    assert (changed["provider"], changed["current"]) == ("account-1", "needs_reauth")


async def test_client_errors_are_returned_unchanged(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(1)
    sim.client.patch("/_sim/config", json={"check_model": True}).raise_for_status()
    async with client(router, pool) as c:
        response = await c.post("/v1/responses", json={**STREAM, "model": "no-such-model"})
    assert response.status_code == 400
    assert "not supported" in response.text
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-codexpool-attempts"] == "1"
    assert len(sim.requests()) == 1


async def test_stall_before_first_byte_fails_over_within_ttfb(
    sim: Sim, pool: Pool, routers
) -> None:
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(1, ROUTER_TTFB_TIMEOUT_S="1")
    sim.fault(1, kind="stall_headers", count=1, duration_ms=30_000)
    async with client(router, pool) as c:
        started = time.monotonic()
        response = await c.post("/v1/responses", json=STREAM)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.headers["x-codexpool-provider"] == "account-2"
    assert elapsed < 1 + 1


async def test_cut_mid_stream_ends_with_an_error_event(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2], strategy="primary-first")
    [router] = routers(1)
    sim.fault(1, kind="cut_stream", count=1, after_events=3)
    async with client(router, pool) as c:
        response = await c.post("/v1/responses", json=STREAM)
    assert response.status_code == 200
    assert response.headers["x-codexpool-provider"] == "account-1"
    assert "event: response.failed" in response.text
    assert "response.completed" not in response.text
    assert len(sim.requests()) == 1
