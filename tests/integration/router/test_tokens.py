"""The router's decrypted tokens, kept by the tag the selection script reports."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from codexpool_router.config import Settings
from codexpool_router.refresh import Tokens
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, put_pool, register_provider
from codexpool_shared.store.agents import key_digest
from codexpool_shared.store.selection import Selector, parse_members
from tests.integration.router.helpers import auth_json, keyring


def _access_token(doc: dict[str, object]) -> str:
    tokens = doc["tokens"]
    assert isinstance(tokens, dict)
    return str(tokens["access_token"])


async def test_a_new_tag_is_read_once_and_an_old_one_never_answers(
    redis: Redis, namespace: str
) -> None:
    keys, ring = Keys(namespace), keyring()
    first, second = auth_json("acc-1"), auth_json("acc-1", exp=int(time.time()) + 1000)
    assert _access_token(first) != _access_token(second)
    await register_provider(redis, keys, ring, "p1", first)
    _, key = await create_agent(redis, keys, "agent")
    await put_pool(redis, keys, "agent", "round-robin", ["p1"])
    settings = Settings(namespace=namespace)
    selector = Selector(redis, keys, settings)
    tokens = Tokens(redis, keys, ring, settings.redis_timeout_s)

    before = (await selector.select(key_digest(key), int(time.time() * 1000), "")).candidates[0]
    assert tokens.current("p1", before.token_tag) is None
    assert await tokens.load("p1") == _access_token(first)
    assert tokens.current("p1", before.token_tag) == _access_token(first)

    # A re-link stores a new envelope: its tag is new, so the old token is not reused.
    await register_provider(redis, keys, ring, "p1", second, replace=True)
    after = (await selector.select(key_digest(key), int(time.time() * 1000), "")).candidates[0]
    assert after.token_tag != before.token_tag
    assert tokens.current("p1", after.token_tag) is None
    assert await tokens.load("p1") == _access_token(second)


async def test_warm_loads_every_member_and_a_missing_store_yields_none(
    redis: Redis, namespace: str
) -> None:
    keys, ring = Keys(namespace), keyring()
    docs = {f"p{i}": auth_json(f"acc-{i}") for i in (1, 2, 3)}
    for name, doc in docs.items():
        await register_provider(redis, keys, ring, name, doc)
    _, key = await create_agent(redis, keys, "agent")
    await put_pool(redis, keys, "agent", "round-robin", list(docs))
    settings = Settings(namespace=namespace, max_attempts=1)
    selection = await Selector(redis, keys, settings).select(
        key_digest(key), int(time.time() * 1000), ""
    )
    assert len(selection.candidates) == 1  # the others are members only: the fail-open snapshot
    tokens = Tokens(redis, keys, ring, settings.redis_timeout_s)
    tokens.warm(selection.members)
    members = parse_members(selection.members)
    deadline = time.monotonic() + 10  # three reads in the background; generous on a busy CI
    while not all(tokens.current(m.name, m.token_tag) for m in members):
        assert time.monotonic() < deadline, "warm() did not load every member's token"
        await asyncio.sleep(0.01)
    assert {m.name: tokens.current(m.name, m.token_tag) for m in members} == {
        name: _access_token(doc) for name, doc in docs.items()
    }

    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    gone = Tokens(unreachable, keys, ring, 0.5)
    assert await gone.load("p1") is None
    await unreachable.aclose()
