# ruff: noqa: F811 - fixtures are imported by name and requested as parameters
"""Router, health, admin API and codex-sim as real processes: after a run of Responses and Chat
Completions requests (one failing over), the 28-day usage history shows, per provider and for
the agent, the requests the sim received and the tokens it reported."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import openai

from tests.e2e.conftest import poll
from tests.e2e.health_stack import Stack, stack  # noqa: F401

ADMIN_TOKEN = "e2e-usage-admin-token-0123456789abcdef"
TOKENS = {1: (100, 10), 2: (200, 20)}
"""Input and output tokens each account reports per answered request."""


async def test_usage_history_matches_what_the_sim_recorded(stack: Stack) -> None:
    upstream = stack.upstream
    for n, (prompt, completion) in TOKENS.items():
        upstream.patch(
            n,
            primary_cost_percent=0,
            secondary_cost_percent=0,
            usage={"input_tokens": prompt, "output_tokens": completion, "cached_tokens": 0},
        )
    await stack.pool([1, 2])
    upstream.fault(1, kind="http_error", status=500, count=2)
    stack.start("codexpool_health", HEALTH_BATCH_LINGER_MS="1")
    router = stack.start("codexpool_router")
    admin_api = stack.start("codexpool_admin_api", CODEXPOOL_ADMIN_TOKEN=ADMIN_TOKEN)
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=stack.api_key, max_retries=0)
    for stream in (False, True) * 3:
        await sdk.responses.create(model="gpt-5-codex", input="hi", stream=stream)
        chat = await sdk.chat.completions.create(
            model="gpt-5-codex", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        if stream:
            async for _ in chat:  # type: ignore[union-attr]
                pass
    await sdk.close()

    records = upstream.requests()
    names = {upstream.auth_json(n)["tokens"]["account_id"]: n for n in TOKENS}
    received = Counter(names[r["account_id"]] for r in records)
    answered = Counter(names[r["account_id"]] for r in records if r["status"] == 200)
    assert sum(answered.values()) == 12 and received[1] == answered[1] + 2

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=admin_api.url, headers=headers, timeout=10) as admin:

        async def history(path: str) -> dict[str, Any] | None:
            doc = (await admin.get(path, params={"hours": 48})).json()
            return doc if doc["requests"] == sum(received.values()) else None

        agent = await poll(
            lambda: history(f"/api/agents/{stack.agent_id}/codex-pool/usage-history"),
            timeout_s=30,
        )
        assert agent["hours"] == 48 and len(agent["total"]) == 48
        assert agent["input_tokens"] == sum(answered[n] * TOKENS[n][0] for n in TOKENS)
        assert agent["output_tokens"] == sum(answered[n] * TOKENS[n][1] for n in TOKENS)
        for n, row in zip(TOKENS, agent["providers"], strict=True):
            assert row["provider"] == f"account-{n}"
            assert (row["requests"], row["input_tokens"], row["output_tokens"]) == (
                received[n],
                answered[n] * TOKENS[n][0],
                answered[n] * TOKENS[n][1],
            )
        # Summed over the hours: a run may straddle the turn of an hour.
        hours = agent["total"]
        assert sum(p["requests"] for p in hours) == sum(received.values())
        assert sum(p["failures"] for p in hours) == 2
        assert sum(p["input_tokens"] for p in hours) == agent["input_tokens"]

        for n in TOKENS:
            fleet = (await admin.get(f"/api/providers/account-{n}/usage-history")).json()
            assert fleet["hours"] == 28 * 24 and len(fleet["total"]) == 28 * 24
            assert (fleet["requests"], fleet["input_tokens"]) == (
                received[n],
                answered[n] * TOKENS[n][0],
            )
        unknown = await admin.get("/api/providers/nobody/usage-history")
        assert unknown.status_code == 404
