"""A router key's "last used": the router records it off the request path (one dict store per
request, flushed with the quota snapshots), the store lists it, revoking the key forgets it."""

from __future__ import annotations

import time

import httpx

from codexpool_shared.store import list_agent_keys, revoke_agent_key
from tests.e2e.conftest import poll
from tests.e2e.router.conftest import Pool, Sim

BODY = {"model": "gpt-5-codex", "input": "hi", "stream": False}


async def test_the_router_records_when_each_key_was_last_used(
    sim: Sim, pool: Pool, routers
) -> None:
    await pool.setup(sim, [1, 2])
    [router] = routers(1)
    [key] = await list_agent_keys(pool.redis, pool.keys, pool.agent_id)
    assert key.last_used_at is None
    before = int(time.time())
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
        answer = await client.post(
            "/v1/responses", json=BODY, headers={"Authorization": f"Bearer {pool.api_key}"}
        )
    assert answer.status_code == 200, answer.text

    async def recorded() -> bool:
        [listed] = await list_agent_keys(pool.redis, pool.keys, pool.agent_id)
        return listed.last_used_at is not None

    await poll(recorded, timeout_s=10)
    [listed] = await list_agent_keys(pool.redis, pool.keys, pool.agent_id)
    assert listed.last_used_at is not None and before <= listed.last_used_at <= time.time() + 1

    # Only the whole id names the key: a prefix of it revokes nothing.
    assert not await revoke_agent_key(pool.redis, pool.keys, pool.agent_id, key.key_id[:4])
    assert await revoke_agent_key(pool.redis, pool.keys, pool.agent_id, key.key_id)
    assert not await pool.redis.exists(pool.keys.agent_keys_used(pool.agent_id))
