"""schemathesis with every check (`--checks all`) over the router's documented operations.

The router runs on the real Redis with an agent whose pool holds one provider; the upstream and
the issuer are a closed port, so a routed request ends as a 503 (no attempt can connect), and
nothing generated ever leaves the host.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient

from codexpool_admin_api.app import create_app as create_admin_app
from codexpool_admin_api.config import Settings as AdminSettings
from codexpool_router.app import create_app
from codexpool_router.config import Settings
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.admin_api.conftest import ADMIN_TOKEN, serve_in_thread
from tests.integration.conformance import ALL_CHECKS, bounded
from tests.integration.router.helpers import auth_json

_CLOSED = "http://127.0.0.1:9"
# The document does not depend on the settings; any valid ones build it without connecting.
_offline = Settings.model_validate({"CODEXPOOL_SECRET_KEY": base64.b64encode(bytes(32)).decode()})
# With no upstream to reach, a routed request's documented answer is a 503 (all attempts failed,
# no eligible member): a server error only if it is anything else (a 500, say).
_NO_UPSTREAM = {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}}
schema = schemathesis.openapi.from_dict(
    create_app(_offline).api.openapi(),
    config=schemathesis.config.SchemathesisConfig.from_dict({"checks": _NO_UPSTREAM}),
)


def _agent_with_a_pool(infra: InfraUrls, namespace: str, secret_key: str) -> str:
    """Register a provider, an agent and its pool through the admin API; the agent's key."""
    admin = AdminSettings.model_validate(
        {
            "REDIS_URL": infra.redis_url,
            "CODEXPOOL_NAMESPACE": namespace,
            "CODEXPOOL_SECRET_KEY": secret_key,
            "CODEXPOOL_ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    with TestClient(
        create_admin_app(admin, publisher=InMemoryPublisher(namespace)),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as api:
        steps = [
            api.post("/api/providers", json={"name": "p1", "auth_json": auth_json("acct-1")}),
            api.post("/api/agents", json={"id": "bot"}),
            api.put(
                "/api/agents/bot/codex-pool",
                json={"strategy": "primary-first", "providers": ["p1"]},
            ),
            api.post("/api/agents/bot/keys", json={}),
        ]
    assert [step.status_code for step in steps] == [201, 201, 200, 201], steps[-1].text
    key: str = steps[-1].json()["api_key"]
    return key


@pytest.fixture
def router(infra: InfraUrls, namespace: str, sync_redis: redis.Redis) -> Iterator[tuple[str, str]]:
    secret_key = base64.b64encode(os.urandom(32)).decode()
    key = _agent_with_a_pool(infra, namespace, secret_key)
    config = Settings.model_validate(
        {
            "REDIS_URL": infra.redis_url,
            "CODEXPOOL_NAMESPACE": namespace,
            "CODEXPOOL_SECRET_KEY": secret_key,
            "CODEXPOOL_UPSTREAM_BASE_URL": f"{_CLOSED}/backend-api",
            "CODEXPOOL_AUTH_BASE_URL": _CLOSED,
        }
    )
    with serve_in_thread(create_app(config, publisher=InMemoryPublisher(namespace))) as url:
        yield url, key


# The router serves from a thread of this process, and its background work after an answer
# (live-state writes, their Redis spans) draws span ids from the global ``random`` (OTel's
# RandomIdGenerator) while hypothesis draws the next example: hypothesis takes that for the
# strategy using ``random``. The examples stay derandomized; only that warning is not an error.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@schema.parametrize()
@bounded
def test_every_answer_matches_the_schema(case: Any, router: tuple[str, str]) -> None:
    url, key = router
    case.call_and_validate(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, checks=ALL_CHECKS
    )
