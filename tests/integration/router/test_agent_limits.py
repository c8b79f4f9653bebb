"""An agent's own limits, applied by the selection script (issue 20)."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, key_digest, put_pool, register_provider
from codexpool_shared.store.agents import get_agent, set_agent_limits
from codexpool_shared.store.selection import AgentRefused, Selector
from tests.integration.router.helpers import auth_json, keyring


@pytest.fixture
async def agent(redis: Redis, namespace: str) -> tuple[Keys, Selector, str]:
    keys = Keys(namespace)
    await register_provider(redis, keys, keyring(), "p1", auth_json("acc-1"))
    _, key = await create_agent(redis, keys, "agent")
    await put_pool(redis, keys, "agent", "round-robin", ["p1"])
    return keys, Selector(redis, keys, Settings(namespace=namespace)), key_digest(key)


async def test_requests_per_minute_is_a_sliding_window(redis: Redis, agent) -> None:
    keys, selector, digest = agent
    await set_agent_limits(redis, keys, "agent", {"requests_per_minute": 3})
    start = int(time.time() * 1000)
    for i in range(3):
        await selector.select(digest, start + i * 1000, "", "m", f"req-{i}")
    with pytest.raises(AgentRefused) as refused:
        await selector.select(digest, start + 2500, "", "m", "req-3")
    assert refused.value.code == "agent_limit"
    assert refused.value.limit == "requests_per_minute"
    assert refused.value.until_ms == start + 60_000
    # The refused request did not enter the window; the first one leaves it after 60 s.
    await selector.select(digest, start + 60_000, "", "m", "req-4")
    with pytest.raises(AgentRefused):
        await selector.select(digest, start + 60_001, "", "m", "req-5")
    await set_agent_limits(redis, keys, "agent", {"requests_per_minute": None})
    assert (await selector.select(digest, start + 60_003, "", "m", "req-6")).candidates


async def test_tokens_models_and_expiry(redis: Redis, agent) -> None:
    keys, selector, digest = agent
    now = int(time.time() * 1000)
    assert not (await selector.select(digest, now, "", "m", "r1")).count_tokens
    await set_agent_limits(
        redis, keys, "agent", {"tokens_per_day": 100, "models": ["gpt-5", "gpt-5-codex"]}
    )
    limits = (await get_agent(redis, keys, "agent")).limits
    assert limits.tokens_per_day == 100 and limits.models == ("gpt-5", "gpt-5-codex")
    assert (await selector.select(digest, now, "", "gpt-5", "r2")).count_tokens
    with pytest.raises(AgentRefused) as wrong:
        await selector.select(digest, now, "", "o3", "r3")
    assert wrong.value.code == "model_not_allowed"
    await redis.set(keys.agent_tokens("agent", str(now // 86_400_000)), 100)
    with pytest.raises(AgentRefused) as spent:
        await selector.select(digest, now, "", "gpt-5", "r4")
    assert spent.value.limit == "tokens_per_day"
    assert spent.value.until_ms == (now // 86_400_000 + 1) * 86_400_000
    await set_agent_limits(
        redis, keys, "agent", {"tokens_per_day": None, "expires_at": now // 1000 - 1}
    )
    with pytest.raises(AgentRefused) as expired:
        await selector.select(digest, now, "", "gpt-5", "r5")
    assert expired.value.code == "agent_expired"
