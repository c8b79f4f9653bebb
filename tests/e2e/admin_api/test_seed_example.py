"""The seed's example through the admin API, against real sim, router and health processes;
and the canary: no token plaintext in any admin API response, log, event or Redis value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from codexpool_shared.keys import Keys
from codexpool_shared.testing.processes import Service
from tests.e2e.admin_api.conftest import ADMIN_TOKEN, Sim
from tests.e2e.conftest import EventTap, poll

BODY = {"model": "gpt-5-codex", "input": "hi", "stream": True}
ONE = "chatgpt-oauth-account-1"
TWO = "chatgpt-oauth-account-2"
POOL = "/api/agents/my-agent/codex-pool"


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def _redis_values(redis: Redis, namespace: str) -> bytes:
    """Every key and value of the namespace, concatenated."""
    out: list[bytes | str] = []
    async for key in redis.scan_iter(match=Keys(namespace).pattern, count=500):
        out.append(key)
        kind = _b(await redis.type(key))
        if kind == b"string":
            out.append(await redis.get(key) or b"")
        elif kind == b"hash":
            for field, value in (await redis.hgetall(key)).items():
                out += [field, value]
        elif kind == b"set":
            out += await redis.smembers(key)
        elif kind == b"list":
            out += await redis.lrange(key, 0, -1)
        elif kind == b"zset":
            out += [m for m in await redis.zrange(key, 0, -1) if isinstance(m, bytes | str)]
        elif kind == b"stream":
            for _, fields in await redis.xrange(key) or ():
                for field, value in (fields or {}).items():
                    out += [field, value]
    return b"\n".join(_b(part) for part in out)


async def test_seed_example_through_the_admin_api(
    sim: Sim,
    services: Callable[[str], Service],
    admin_api: Service,
    admin: httpx.Client,
    events: EventTap,
    redis: Redis,
    namespace: str,
) -> None:
    router = services("codexpool_router")
    services("codexpool_health")
    responses: list[str] = []

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = admin.request(method, path, **kwargs)
        responses.append(response.text)
        assert response.is_success, (method, path, response.text)
        return response

    for n, name in ((1, ONE), (2, TWO)):
        registered = call(
            "POST", "/api/providers", json={"name": name, "auth_json": sim.auth_json(n)}
        )
        assert registered.json()["account_id"] == sim.account_id(n)
    created = admin.post("/api/agents", json={"id": "my-agent", "name": "My agent"})
    assert created.status_code == 201
    api_key = created.json()["api_key"]
    saved = call("PUT", POOL, json={"strategy": "round-robin", "providers": [ONE, TWO]})
    assert saved.json()["version"] == 1

    async with httpx.AsyncClient(
        base_url=router.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=20
    ) as client:

        async def served() -> str:
            response = await client.post("/v1/responses", json=BODY)
            assert response.status_code == 200, response.text
            return response.headers["x-codexpool-provider"]

        first = [await served() for _ in range(4)]
        assert first in ([ONE, TWO] * 2, [TWO, ONE] * 2)
        removed = call("DELETE", f"{POOL}/providers/{ONE}")
        assert removed.json()["providers"] == [TWO]
        assert [await served() for _ in range(3)] == [TWO] * 3

    async def counted() -> Any:
        rows = call("GET", f"{POOL}/activity").json()["providers"]
        return rows if rows[0]["requests"] >= 5 else None

    rows = await poll(counted, timeout_s=20)
    assert rows[0]["provider"] == TWO and rows[0]["success_rate"] == 1.0
    assert rows[0]["oauth"]["account_id"] == sim.account_id(2)

    sim.patch(2, primary_used_percent=61, secondary_used_percent=12)
    refreshed = call("POST", f"{POOL}/refresh").json()["providers"][0]
    quota = sim.quota(2)
    assert refreshed["refresh_error"] is None, refreshed
    for window in ("primary", "secondary"):
        assert refreshed["quota"][window]["used_percent"] == round(quota[window]["used_percent"]), (
            refreshed,
            sim.requests("/backend-api/wham/usage"),
        )
        assert refreshed["quota"][window]["resets_at"] == quota[window]["reset_at"]

    async def published() -> list[dict[str, Any]]:
        found = events.of_type("pool.changed.v1")
        return found if len(found) >= 2 else []

    changes = await poll(published)
    assert [(e["change"], e["version"]) for e in changes] == [("created", 1), ("member_removed", 2)]
    assert all(e["actor"] == "bootstrap" for e in changes)

    # The canary: every secret that went in, looked for in every sink the admin API writes to.
    secrets = [ADMIN_TOKEN, api_key]
    for n in (1, 2):
        tokens = sim.auth_json(n)["tokens"]
        secrets += [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    responses += [
        call("GET", path).text for path in ("/api/providers", "/api/export", "/api/audit")
    ]
    sinks = {
        "admin API responses": "\n".join(responses),
        "admin API log": admin_api.log(),
        "events": "\n".join(str(body) + str(headers) for body, headers in events.messages),
        "redis": (await _redis_values(redis, namespace)).decode(errors="replace"),
    }
    for sink, text in sinks.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:6]}...) leaked into the {sink}"
