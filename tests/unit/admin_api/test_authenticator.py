"""Authentication decisions, on an in-memory stand-in for the few Redis calls they make."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

import pytest
from prometheus_client import CollectorRegistry

from codexpool_admin_api.auth import Authenticator, TokenRecord, TokenStore
from codexpool_admin_api.metrics import Metrics
from codexpool_shared.crypto import secret_digest
from codexpool_shared.errors import ApiError
from codexpool_shared.keys import Keys

BOOTSTRAP = "unit-bootstrap-admin-token-0123456789"


class FakeRedis:
    """GET, SET, TTL and a pipeline of INCR/EXPIRE NX: all the authenticator uses."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.ttls: dict[str, int] = {}
        self._queued: list[tuple[str, tuple[Any, ...]]] = []

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def ttl(self, key: str) -> int:
        return self.ttls.get(key, -1)

    def pipeline(self, transaction: bool = True) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._queued.clear()

    def incr(self, key: str) -> None:
        self._queued.append(("incr", (key,)))

    def expire(self, key: str, seconds: int, nx: bool = False) -> None:
        self._queued.append(("expire", (key, seconds, nx)))

    async def execute(self) -> list[Any]:
        for op, args in self._queued:
            if op == "incr":
                self.values[args[0]] = str(int(self.values.get(args[0], b"0")) + 1).encode()
            elif op == "expire" and not (args[2] and args[0] in self.ttls):
                self.ttls[args[0]] = args[1]
        self._queued.clear()
        return []


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def authenticator(redis: FakeRedis, registry: CollectorRegistry) -> Authenticator:
    keys = Keys("unit")
    fake: Any = redis
    return Authenticator(
        fake,
        keys,
        TokenStore(fake, keys),
        BOOTSTRAP,
        max_failures=3,
        window_s=60,
        metrics=Metrics(registry),
    )


async def test_bootstrap_token_is_the_bootstrap_admin(authenticator: Authenticator) -> None:
    principal = await authenticator.authenticate(BOOTSTRAP, "10.0.0.1")
    assert (principal.id, principal.role) == ("bootstrap", "admin")


async def test_stored_tokens_are_found_by_their_digest(
    authenticator: Authenticator, redis: FakeRedis
) -> None:
    record = TokenRecord(
        id="tok_1", name="ci", role="viewer", created_at=datetime.now(UTC), created_by="x"
    )
    redis.values[Keys("unit").admin_token(secret_digest("cpa_viewer"))] = (
        record.model_dump_json().encode()
    )
    principal = await authenticator.authenticate("cpa_viewer", "10.0.0.1")
    assert (principal.id, principal.name, principal.role) == ("tok_1", "ci", "viewer")


async def test_failures_are_counted_per_client_then_rate_limited(
    authenticator: Authenticator, registry: CollectorRegistry
) -> None:
    for _ in range(3):
        with pytest.raises(ApiError) as refused:
            await authenticator.authenticate("cpa_guess", "10.0.0.1")
        assert refused.value.status_code == 401
        assert refused.value.headers == {"WWW-Authenticate": "Bearer"}
    with pytest.raises(ApiError) as limited:
        await authenticator.authenticate(BOOTSTRAP, "10.0.0.1")
    assert limited.value.status_code == 429
    assert limited.value.headers == {"Retry-After": "60"}
    # Another address is not held back by this one's failures.
    assert (await authenticator.authenticate(BOOTSTRAP, "10.0.0.2")).role == "admin"
    failures = registry.get_sample_value(
        "codexpool_admin_auth_failures_total", {"reason": "invalid_token"}
    )
    assert failures == 3.0


async def test_a_missing_token_is_not_counted_as_a_guess(
    authenticator: Authenticator, redis: FakeRedis
) -> None:
    for _ in range(5):
        with pytest.raises(ApiError) as refused:
            await authenticator.authenticate(None, "10.0.0.1")
        assert refused.value.code == "missing_token"
    assert redis.values == {}
