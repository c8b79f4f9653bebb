"""schemathesis with every check (`--checks all`) over the admin API's own OpenAPI document."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import schemathesis

from codexpool_admin_api.app import create_app
from codexpool_admin_api.config import Settings
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.admin_api.conftest import ADMIN_TOKEN, serve_in_thread
from tests.integration.conformance import ALL_CHECKS, bounded

# The document does not depend on the settings; any valid ones build it without connecting.
_offline = Settings.model_validate({"CODEXPOOL_SECRET_KEY": base64.b64encode(bytes(32)).decode()})
# Three operations check what JSON Schema cannot say: a registration needs tokens whose JWT names
# the account, an import needs records and envelopes that decrypt, and a pool's priorities must
# name its own members. Their 422 is a valid answer.
_SEMANTIC_422 = {
    "include-name": [
        "POST /api/providers",
        "POST /api/import",
        "PUT /api/agents/{agent_id}/codex-pool",
    ],
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
        }
    },
}
# Starting a device login for a new provider asks the OAuth issuer, which is deliberately
# unreachable here (below): its documented 502 "the OAuth issuer is unreachable" is the answer.
_ASKS_THE_ISSUER = {
    "include-name": ["POST /api/providers/{name}/oauth/device"],
    "checks": {"not_a_server_error": {"expected-statuses": ["1xx", "2xx", "3xx", "4xx", "502"]}},
}
schema = schemathesis.openapi.from_dict(
    create_app(_offline).openapi(),
    config=schemathesis.config.SchemathesisConfig.from_dict(
        {"operations": [_SEMANTIC_422, _ASKS_THE_ISSUER]}
    ),
)


# The API's shape does not depend on the store; the stores are proven on a cluster elsewhere.
pytestmark = pytest.mark.parametrize("redis_target", ["server"], indirect=True)


@pytest.fixture
def admin_url(settings: Settings, sync_redis: redis.Redis) -> Iterator[str]:
    # The upstream and issuer point at a closed port: generated calls must never leave the host.
    isolated = settings.model_copy(
        update={
            "upstream_base_url": "http://127.0.0.1:9/backend-api",
            "auth_base_url": "http://127.0.0.1:9",
        }
    )
    with serve_in_thread(create_app(isolated, publisher=InMemoryPublisher())) as url:
        yield url


@schema.parametrize()
@bounded
def test_every_answer_matches_the_schema(case: Any, admin_url: str) -> None:
    case.call_and_validate(
        base_url=admin_url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        checks=ALL_CHECKS,
    )
