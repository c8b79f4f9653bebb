"""Canary: the providers' token plaintexts never leave the router's memory."""

from __future__ import annotations

import json
from typing import Any

import httpx

from codexpool_shared.testing.processes import stop
from tests.e2e.conftest import EventTap, poll
from tests.e2e.router.conftest import Pool, Sim

STREAM = {"model": "gpt-5-codex", "input": "hi", "stream": True}


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def tokens_of(sim: Sim) -> set[str]:
    found: set[str] = set()
    for n in (1, 2, 3):
        current = sim.client.get(f"/_sim/accounts/account-{n}/auth").json()["tokens"]
        for doc in (sim.auth_json(n)["tokens"], current):
            found |= {doc[f] for f in ("access_token", "refresh_token", "id_token") if doc.get(f)}
    return found


async def test_tokens_appear_in_no_sink(sim: Sim, pool: Pool, routers, events: EventTap) -> None:
    await pool.setup(sim, [1, 2, 3], strategy="primary-first")
    [router] = routers(
        1,
        OTEL_TRACES_EXPORTER="console",
        OTEL_TRACES_SAMPLER="always_on",
        OTEL_BSP_SCHEDULE_DELAY="100",  # export spans as they end, not only at exit
    )
    sim.patch(1, expire_access_token=True)
    sim.fault(2, kind="http_error", status=500, count=2)
    sim.fault(3, kind="usage_limit", count=1)
    seen: list[str] = []
    headers = {"Authorization": f"Bearer {pool.api_key}", "session-id": "canary-session"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        for body in (STREAM, {**STREAM, "stream": False}, STREAM, {"model": "m"}):
            response = await c.post("/v1/responses", json=body)
            seen.append(response.text + json.dumps(dict(response.headers)))
        sim.fault(1, kind="cut_stream", count=1)
        response = await c.post("/v1/responses", json=STREAM)
        seen.append(response.text)
        for path in ("/v1/usage", "/backend-api/wham/usage", "/v1/models", "/metrics"):
            response = await c.get(path)
            assert response.status_code == 200, (path, response.text)
            seen.append(response.text + json.dumps(dict(response.headers)))
    assert sim.refreshes()[sim.account_id(1)]["refreshes"] == 1
    await events.wait_for("request.outcome.v1", 5)
    seen += [json.dumps(body) + json.dumps(hdrs, default=str) for body, hdrs in events.messages]
    stored: list[str] = []
    async for key in pool.redis.scan_iter(match=pool.keys.pattern):
        kind = text(await pool.redis.type(key))
        if kind == "hash":
            for field, value in (await pool.redis.hgetall(key)).items():
                if text(field).endswith("_token") and value:
                    assert text(value).startswith("v1:"), (key, field)
                stored.append(text(value))
        elif kind == "string":
            stored.append(text(await pool.redis.get(key)))

    async def spans_exported() -> bool:
        return "POST codex/responses" in router.log()

    await poll(spans_exported)
    stop(router.process)
    log = router.log()
    canaries = tokens_of(sim)
    assert len(canaries) >= 7
    for canary in canaries:
        for name, sink in (
            ("log", log),
            ("answers", "\n".join(seen)),
            ("redis", "\n".join(stored)),
        ):
            assert canary not in sink, f"a token leaked into the {name}"
