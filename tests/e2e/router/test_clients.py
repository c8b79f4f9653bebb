"""The official openai SDK, and the pool's usage and models documents."""

from __future__ import annotations

import httpx
import openai
import orjson
import zstandard

from tests.e2e.conftest import poll
from tests.e2e.router.conftest import Pool, Sim


async def test_openai_sdk_streaming_and_not(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2])
    [router] = routers(1)
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=pool.api_key)
    response = await sdk.responses.create(model="gpt-5-codex", input="hi")
    assert response.status == "completed"
    assert response.output_text == "Hello world"
    assert response.usage is not None and response.usage.total_tokens > 0
    async with sdk.responses.stream(model="gpt-5-codex", input="hi") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == "Hello world"
    assert final.output_text == "Hello world"
    raw = await sdk.responses.with_raw_response.create(model="gpt-5-codex", input="hi")
    assert raw.headers["x-codexpool-provider"] in ("account-1", "account-2")
    assert raw.headers["x-request-id"].startswith("req_")
    await sdk.close()


async def test_usage_and_models_describe_the_pool(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2, 3])
    [router] = routers(1)
    sim.patch(1, primary_used_percent=100, primary_reset_after_seconds=600)
    sim.patch(2, primary_used_percent=30)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        for _ in range(3):
            assert (await c.post("/v1/responses", json={"model": "m"})).status_code == 200

        async def reported_alike():
            # Both routes give one document; a quota flush landing between the two reads
            # (a failed-over request answers twice) changes it, so read until it has settled.
            doc = (await c.get("/backend-api/wham/usage")).json()
            if not all(p["quota"] for p in doc["providers"]):
                return None
            again = (await c.get("/v1/usage")).json()
            return doc if again["providers"] == doc["providers"] else None

        usage = await poll(reported_alike)
        models = (await c.get("/v1/models")).json()
        unauthorized = await c.get("/v1/usage", headers={"Authorization": "Bearer cpk_nope"})
    limits = usage["rate_limit"]
    assert limits["allowed"] is True and limits["limit_reached"] is False
    assert 40 <= limits["primary_window"]["used_percent"] <= 50
    assert [p["provider"] for p in usage["providers"]] == ["account-1", "account-2", "account-3"]
    assert usage["providers"][0]["cooldown_reason"] == "usage_limit"
    assert models["object"] == "list" and models["data"]
    assert unauthorized.status_code == 401


async def test_sessions_stick_to_one_provider(sim: Sim, pool: Pool, routers) -> None:
    await pool.setup(sim, [1, 2, 3])
    [router] = routers(1)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:

        async def provider(body: dict[str, object], **extra: str) -> str:
            response = await c.post("/v1/responses", json=body, headers=extra)
            assert response.status_code == 200
            return response.headers["x-codexpool-provider"]

        by_header = {await provider({"model": "m"}, **{"session-id": "s-1"}) for _ in range(4)}
        by_key = {await provider({"model": "m", "prompt_cache_key": "k-1"}) for _ in range(4)}
        by_metadata = {
            await provider({"model": "m", "client_metadata": {"session_id": "s-2"}})
            for _ in range(4)
        }
        unrelated = {await provider({"model": "m"}) for _ in range(3)}
    assert len(by_header) == len(by_key) == len(by_metadata) == 1
    assert len(unrelated) == 3
    affinity = [k async for k in pool.redis.scan_iter(match=pool.keys.affinity("*", "*"))]
    assert len(affinity) == 3  # digests of the three sessions, never the session keys
    assert not any(raw in str(affinity) for raw in ("s-1", "s-2", "k-1"))


async def test_a_zstd_body_is_decoded_and_forwarded_as_json(sim: Sim, pool: Pool, routers) -> None:
    """Codex clients with ``request_compression`` send zstd bodies; the upstream gets JSON."""
    await pool.setup(sim, [1])
    [router] = routers(1)
    body = orjson.dumps({"model": "gpt-5-codex", "input": "compressed", "stream": True})
    headers = {
        "Authorization": f"Bearer {pool.api_key}",
        "Content-Type": "application/json",
        "Content-Encoding": "zstd",
    }
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as c:
        ok = await c.post("/v1/responses", content=zstandard.compress(body), headers=headers)
        refused = await c.post("/v1/responses", content=body, headers=headers)
    assert ok.status_code == 200
    assert "response.completed" in ok.text
    [recorded] = sim.requests()
    assert recorded["body"]["input"] == "compressed"
    assert "content-encoding" not in recorded["headers"]
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_content_encoding"
