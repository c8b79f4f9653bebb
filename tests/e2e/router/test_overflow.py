"""The pool's opt-in overflow (issue 19): with every member out of quota, requests succeed
through the overflow endpoint (codex-sim's plain /v1/responses), Chat Completions included, and
are counted as such; without one, the documented 429."""

from __future__ import annotations

import httpx
import openai

from codexpool_shared.store.overflow import clear_overflow, set_overflow
from tests.e2e.router.conftest import Pool, Sim

BODY = {"model": "gpt-5-codex", "input": "hi"}


async def _exhausted_with_overflow(sim: Sim, pool: Pool, base_url: str) -> None:
    """A pool of accounts 1 and 2, both out of quota, overflowing to ``base_url``."""
    await pool.setup(sim, [1, 2])
    for n in (1, 2):
        sim.patch(n, primary_used_percent=100, primary_reset_after_seconds=600)
    # Account 3 is no member: its token stands for an OpenAI API key.
    key = sim.auth_json(3)["tokens"]["access_token"]
    await set_overflow(pool.redis, pool.keys, pool.keyring, pool.agent_id, base_url, key)


def _overflow_attempts(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("codexpool_router_attempts_total{")
        and 'provider="overflow"' in line
        and 'outcome="success"' in line
    )


async def test_an_exhausted_pool_overflows_only_when_configured(
    sim: Sim, pool: Pool, routers
) -> None:
    await _exhausted_with_overflow(sim, pool, sim.url + "/v1/")
    [router] = routers(1)
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=pool.api_key, max_retries=0)
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as client:
        plain = await client.post("/v1/responses", json=BODY)
        assert plain.status_code == 200, plain.text
        assert plain.headers["x-codexpool-provider"] == "overflow"
        assert plain.json()["output"]
        streamed = await sdk.responses.create(model="gpt-5-codex", input="hi", stream=True)
        kinds = [event.type async for event in streamed]
        assert kinds[-1] == "response.completed"
        codex = await client.post("/backend-api/codex/responses", json={**BODY, "stream": True})
        assert codex.status_code == 200 and codex.headers["x-codexpool-provider"] == "overflow"
        assert "response.completed" in codex.text

        served = sim.requests("/v1/responses")
        assert len(served) == 3
        assert {r["account_id"] for r in served} == {sim.account_id(3)}
        assert _overflow_attempts((await client.get("/metrics")).text) == 3

        await clear_overflow(pool.redis, pool.keys, pool.agent_id)
        refused = await client.post("/v1/responses", json=BODY)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "usage_limit_reached"
        assert "x-codexpool-provider" not in refused.headers or (
            refused.headers["x-codexpool-provider"] != "overflow"
        )
        assert len(sim.requests("/v1/responses")) == 3
    await sdk.close()


async def test_chat_completions_overflow_when_the_pool_is_exhausted(
    sim: Sim, pool: Pool, routers
) -> None:
    """/v1/chat/completions is translated to a Responses request for the overflow as for a
    member, and its answer back to Chat Completions (whole and streamed)."""
    await _exhausted_with_overflow(sim, pool, sim.url + "/v1")
    [router] = routers(1)
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=pool.api_key, max_retries=0)
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hi"}
    ]
    whole = await sdk.chat.completions.with_raw_response.create(
        model="gpt-5-codex", messages=messages
    )
    assert whole.headers["x-codexpool-provider"] == "overflow"
    answer = whole.parse()
    assert answer.object == "chat.completion"
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    stream = await sdk.chat.completions.create(
        model="gpt-5-codex",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        usage = chunk.usage or usage
        text += "".join(c.delta.content or "" for c in chunk.choices)
    assert text == answer.choices[0].message.content and usage is not None
    await sdk.close()

    served = sim.requests("/v1/responses")
    assert len(served) == 2 and {r["account_id"] for r in served} == {sim.account_id(3)}
    # What reached the overflow is the Responses request a member would have had.
    assert all(r["body"]["input"] and "messages" not in r["body"] for r in served)
    # The members were tried first (each answered its usage limit) and then left out.
    assert {r["status"] for r in sim.requests()} == {429}
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as client:
        assert _overflow_attempts((await client.get("/metrics")).text) == 2
