# ruff: noqa: F811 - fixtures are imported by name and requested as parameters
"""Router, health, admin API and codex-sim as real processes: a request that skipped a member
cooling down after its usage limit and failed over from a 500 is explained, by its
``x-request-id``, through ``GET /api/requests/{request_id}``."""

from __future__ import annotations

import time
from datetime import datetime

import httpx

from codexpool_shared.store import extend_cooldown
from tests.e2e.conftest import poll
from tests.e2e.health_stack import Stack, stack  # noqa: F401

ADMIN_TOKEN = "e2e-explain-admin-token-0123456789abcdef"
REQUEST = {"model": "gpt-5-codex", "input": "hi", "stream": False}


async def failed_over_request(stack: Stack, router_url: str) -> str:
    """Send until one request failed over from account-2 (500) to account-3; its request id."""
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=router_url, headers=headers, timeout=30) as client:
        for _ in range(4):  # round-robin over two eligible members: account-2 first within two
            response = await client.post("/v1/responses", json=REQUEST)
            assert response.status_code == 200, response.text
            if response.headers["x-codexpool-attempts"] == "2":
                assert response.headers["x-codexpool-provider"] == "account-3"
                return response.headers["x-request-id"]
    raise AssertionError("no request failed over from account-2")


async def test_a_failed_over_request_is_explained_by_its_request_id(stack: Stack) -> None:
    upstream = stack.upstream
    await stack.pool([1, 2, 3])
    now_ms = int(time.time() * 1000)
    until_ms = now_ms + 3_600_000
    await extend_cooldown(
        stack.redis, stack.keys, "account-1", until_ms, "usage_limit", now_ms=now_ms
    )
    upstream.fault(2, kind="http_error", status=500, probability=1.0)
    stack.start("codexpool_health", HEALTH_BATCH_LINGER_MS="1")
    router = stack.start("codexpool_router")
    admin_api = stack.start("codexpool_admin_api", CODEXPOOL_ADMIN_TOKEN=ADMIN_TOKEN)
    request_id = await failed_over_request(stack, router.url)

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=admin_api.url, headers=headers, timeout=10) as admin:

        async def explained() -> httpx.Response | None:
            response = await admin.get(f"/api/requests/{request_id}")
            return response if response.status_code == 200 else None

        body = (await poll(explained, timeout_s=30)).json()
        assert body["request_id"] == request_id and body["agent_id"] == stack.agent_id
        assert body["strategy"] == "round-robin" and body["pool_version"] >= 1
        assert body["explained"] is True
        by_name = {c["provider"]: c for c in body["candidates"]}
        skipped = by_name["account-1"]
        assert (skipped["eligible"], skipped["reason"], skipped["detail"]) == (
            False,
            "cooldown",
            "usage_limit",
        )
        assert abs(_epoch_ms(skipped["until"]) - until_ms) < 1000
        assert [(c["provider"], c["rank"], c["reason"]) for c in body["candidates"][:2]] == [
            ("account-2", 0, "strategy_order"),
            ("account-3", 1, "strategy_order"),
        ]
        assert [(a["provider"], a["outcome"], a["status_code"]) for a in body["attempts"]] == [
            ("account-2", "server_error", 500),
            ("account-3", "success", 200),
        ]
        assert body["final_provider"] == "account-3" and body["final_outcome"] == "success"
        until = time.strftime("%H:%M:%S", time.gmtime(until_ms // 1000))
        assert body["words"][:2] == [
            f"account-1 skipped: cooling down until {until} UTC after usage_limit",
            "account-2 chosen: next in round-robin",
        ]
        assert body["words"][2].startswith(
            "account-3 tried next: account-2 failed (server_error, HTTP 500"
        )

        listed = (await admin.get(f"/api/agents/{stack.agent_id}/codex-pool/requests")).json()
        assert request_id in [r["request_id"] for r in listed]
        missing = await admin.get("/api/requests/req_does_not_exist")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "request_not_found"


def _epoch_ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000
