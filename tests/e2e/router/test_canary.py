"""Canary: the providers' token plaintexts, their proxies' credentials and the pools' overflow
keys never leave the router's memory."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from codexpool_shared.store.egress import set_proxy
from codexpool_shared.store.overflow import set_overflow
from codexpool_shared.testing.processes import stop
from codexpool_shared.testing.socks5 import Socks5Server
from tests.e2e.conftest import EventTap, poll
from tests.e2e.router.conftest import Pool, Sim
from tests.e2e.router.test_egress_proxy import PROXY_PASSWORD, PROXY_USER, ForwardingProxy

STREAM = {"model": "gpt-5-codex", "input": "hi", "stream": True}
SOCKS_PASSWORD = "socks-password-not-for-logs"


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def tokens_of(sim: Sim) -> set[str]:
    found: set[str] = set()
    for n in (1, 2, 3):
        current = sim.client.get(f"/_sim/accounts/account-{n}/auth").json()["tokens"]
        for doc in (sim.auth_json(n)["tokens"], current):
            found |= {doc[f] for f in ("access_token", "refresh_token", "id_token") if doc.get(f)}
    return found


async def stored_values(pool: Pool, encrypted: Callable[[str], bool]) -> list[str]:
    """Every value stored in the pool's namespace; the hash fields ``encrypted`` names (when
    set) must hold ciphertext."""
    stored: list[str] = []
    async for key in pool.redis.scan_iter(match=pool.keys.pattern):
        kind = text(await pool.redis.type(key))
        if kind == "hash":
            for field, value in (await pool.redis.hgetall(key)).items():
                if encrypted(text(field)) and value:
                    assert text(value).startswith("v1:"), (key, field)
                stored.append(text(value))
        elif kind == "string":
            stored.append(text(await pool.redis.get(key)))
    return stored


def assert_in_no_sink(
    secrets: Iterable[str], *, log: str, answers: list[str], stored: list[str]
) -> None:
    sinks = (("log", log), ("answers", "\n".join(answers)), ("redis", "\n".join(stored)))
    for secret in secrets:
        for name, sink in sinks:
            assert secret not in sink, f"a secret leaked into the {name}"


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
    stored = await stored_values(pool, lambda field: field.endswith("_token"))

    async def spans_exported() -> bool:
        return "POST codex/responses" in router.log()

    await poll(spans_exported)
    stop(router.process)
    log = router.log()
    canaries = tokens_of(sim)
    assert len(canaries) >= 7
    assert_in_no_sink(canaries, log=log, answers=seen, stored=stored)


async def test_proxy_credentials_and_overflow_key_appear_in_no_sink(
    sim: Sim, pool: Pool, routers, events: EventTap
) -> None:
    """Issue 19: a provider behind an HTTP proxy with credentials (its token refreshed through
    it), another behind a SOCKS5 proxy with its own, and a pool that overflows; neither proxy's
    password (nor the Proxy-Authorization value) nor the overflow key reaches a log, span,
    event, metric, answer or stored value."""
    await pool.setup(sim, [1, 2])
    sim.client.patch(
        "/_sim/accounts", json={"primary_cost_percent": 0, "secondary_cost_percent": 0}
    ).raise_for_status()
    overflow_key = sim.auth_json(3)["tokens"]["access_token"]
    await set_overflow(
        pool.redis, pool.keys, pool.keyring, pool.agent_id, sim.url + "/v1", overflow_key
    )
    proxy = ForwardingProxy()
    seen: list[str] = []
    async with proxy.running(), Socks5Server(PROXY_USER, SOCKS_PASSWORD) as socks:
        url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"
        seen.append(str(await set_proxy(pool.redis, pool.keys, pool.keyring, "account-2", url)))
        url = f"socks5://{PROXY_USER}:{SOCKS_PASSWORD}@127.0.0.1:{socks.port}"
        seen.append(str(await set_proxy(pool.redis, pool.keys, pool.keyring, "account-1", url)))
        sim.patch(2, expire_access_token=True)
        [router] = routers(
            1,
            OTEL_TRACES_EXPORTER="console",
            OTEL_TRACES_SAMPLER="always_on",
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        headers = {"Authorization": f"Bearer {pool.api_key}"}
        async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
            for body in (STREAM, STREAM, {**STREAM, "stream": False}, STREAM):
                response = await c.post("/v1/responses", json=body)
                assert response.status_code == 200, response.text
                seen.append(response.text + json.dumps(dict(response.headers)))
            for n in (1, 2):
                sim.patch(n, primary_used_percent=100, primary_reset_after_seconds=600)
            for body in (STREAM, {**STREAM, "stream": False}, STREAM):
                response = await c.post("/v1/responses", json=body)
                assert response.headers.get("x-codexpool-provider") == "overflow", response.text
                seen.append(response.text + json.dumps(dict(response.headers)))
            for path in ("/v1/usage", "/backend-api/wham/usage", "/v1/models", "/metrics"):
                response = await c.get(path)
                assert response.status_code == 200, (path, response.text)
                seen.append(response.text + json.dumps(dict(response.headers)))
    assert any(target.endswith("/oauth/token") for _, target, _ in proxy.seen)
    assert {c.account_id for c in socks.requests} == {sim.account_id(1)}
    await events.wait_for("request.outcome.v1", 7)
    assert any(body.get("overflow") for body in events.of_type("request.outcome.v1"))
    seen += [json.dumps(body) + json.dumps(hdrs, default=str) for body, hdrs in events.messages]
    stored = await stored_values(pool, lambda field: field in ("proxy_url", "api_key"))

    async def spans_exported() -> bool:
        return "POST responses" in router.log()

    await poll(spans_exported)
    stop(router.process)
    log = router.log()
    basic = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    secrets = (PROXY_PASSWORD, basic, SOCKS_PASSWORD, overflow_key)
    assert_in_no_sink(secrets, log=log, answers=seen, stored=stored)
