"""schemathesis over the admin API's own OpenAPI document, with an admin token."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from codexpool_admin_api.app import create_app
from codexpool_admin_api.config import Settings
from codexpool_shared.testing.messaging import InMemoryPublisher
from tests.integration.admin_api.conftest import ADMIN_TOKEN, serve_in_thread

# The document does not depend on the settings; any valid ones build it without connecting.
_offline = Settings.model_validate({"CODEXPOOL_SECRET_KEY": base64.b64encode(bytes(32)).decode()})
schema = schemathesis.openapi.from_dict(create_app(_offline).openapi())


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
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_answer_matches_the_schema(case: Any, admin_url: str) -> None:
    case.call_and_validate(
        base_url=admin_url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
