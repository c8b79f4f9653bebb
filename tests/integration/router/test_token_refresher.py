"""The shared single-flight token refresh (codexpool_shared.store.TokenRefresher), real Redis.

The issuer is a fake transport under the real ``codexpool_shared.oauth.TokenExchange``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.events import ProviderStatusChangedV1
from codexpool_shared.keys import Keys
from codexpool_shared.oauth import TokenExchange
from codexpool_shared.store import (
    TokenRefresher,
    read_credentials,
    register_provider,
)
from tests.integration.router.helpers import auth_json, keyring


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace)


class FakeIssuer:
    """A token transport that counts the refresh tokens spent; answers slowly, so concurrent
    callers overlap."""

    def __init__(self, answer: tuple[int, dict[str, Any] | None]) -> None:
        self.answer = answer
        self.spent: list[str] = []

    async def post_json(
        self, url: str, body: Mapping[str, str], *, headers: Mapping[str, str], timeout_s: float
    ) -> tuple[int, bytes]:
        assert url == "http://issuer/oauth/token"
        self.spent.append(body["refresh_token"])
        await asyncio.sleep(0.2)
        status, doc = self.answer
        return status, b"" if doc is None else json.dumps(doc).encode()


def _refresher(
    redis: Redis,
    keys: Keys,
    ring: Keyring,
    issuer: FakeIssuer,
    outcomes: list[str],
    events: list[ProviderStatusChangedV1],
) -> TokenRefresher:
    return TokenRefresher(
        redis,
        keys,
        ring,
        TokenExchange(issuer, "http://issuer", 1.0),
        lock_s=5.0,
        outcome=outcomes.append,
        publish=events.append,
        actor="test",
    )


async def test_two_processes_spend_one_refresh_token_once(redis: Redis, keys: Keys) -> None:
    ring = keyring()
    doc = auth_json("acc-1")
    await register_provider(redis, keys, ring, "p1", doc)
    issuer = FakeIssuer((200, {"access_token": "at-new", "refresh_token": "rt-new"}))
    outcomes: list[str] = []
    events: list[ProviderStatusChangedV1] = []
    # Two refreshers stand for two processes: they share nothing but Redis.
    first, second = (_refresher(redis, keys, ring, issuer, outcomes, events) for _ in range(2))
    tokens = list(
        await asyncio.gather(
            first.refresh("p1", 1), second.refresh("p1", 1), first.refresh("p1", 1)
        )
    )
    assert tokens == ["at-new", "at-new", "at-new"]
    assert issuer.spent == [doc["tokens"]["refresh_token"]]
    assert sorted(outcomes) == ["adopted", "refreshed"]
    assert events == []
    creds = await read_credentials(redis, keys, "p1")
    assert creds.credential_version == 2 and creds.status == "active"
    assert ring.decrypt(creds.refresh_token or "", record="p1", field="refresh_token") == "rt-new"
    assert await redis.get(keys.refresh_lock("p1")) is None
    # A caller that already saw the new version does not spend the new refresh token.
    assert await second.refresh("p1", 1) == "at-new"
    assert len(issuer.spent) == 1


async def test_a_permanent_refusal_marks_needs_reauth_and_publishes_once(
    redis: Redis, keys: Keys
) -> None:
    ring = keyring()
    await register_provider(redis, keys, ring, "p1", auth_json("acc-1"))
    issuer = FakeIssuer((400, {"error": {"code": "refresh_token_reused"}}))
    outcomes: list[str] = []
    events: list[ProviderStatusChangedV1] = []
    first, second = (_refresher(redis, keys, ring, issuer, outcomes, events) for _ in range(2))
    tokens = list(await asyncio.gather(first.refresh("p1", 1), second.refresh("p1", 1)))
    assert tokens == [None, None]
    assert len(issuer.spent) == 1
    assert outcomes == ["refused"]
    creds = await read_credentials(redis, keys, "p1")
    assert creds.status == "needs_reauth" and creds.credential_version == 1
    assert len(events) == 1
    event = events[0]
    assert (event.provider, event.previous, event.current) == ("p1", "active", "needs_reauth")
    assert (event.reason, event.actor, event.dimension) == (
        "refresh_token_reused",
        "test",
        "account",
    )


async def test_a_transient_failure_leaves_the_provider_active(redis: Redis, keys: Keys) -> None:
    ring = keyring()
    await register_provider(redis, keys, ring, "p1", auth_json("acc-1"))
    issuer = FakeIssuer((503, None))
    outcomes: list[str] = []
    events: list[ProviderStatusChangedV1] = []
    refresher = _refresher(redis, keys, ring, issuer, outcomes, events)
    assert await refresher.refresh("p1", 1) is None
    assert outcomes == ["failed"] and events == []
    assert (await read_credentials(redis, keys, "p1")).status == "active"
    assert await redis.get(keys.refresh_lock("p1")) is None
