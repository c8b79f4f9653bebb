"""By default no service believes ``X-Forwarded-For``: not even from loopback.

uvicorn's own default believes loopback, so any process on the host (or in the pod) could guess
tokens without limit by naming a new address each time, or lock out another address.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from codexpool_shared.keys import Keys
from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.processes import Service, ServiceSpec, run_services
from tests.e2e.conftest import service_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

LIMIT = 3


@pytest.fixture
def admin_api(
    infra: InfraUrls, namespace: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    # The default is what is tested: the runner's environment must not choose for the test.
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    env = service_env(
        infra,
        namespace,
        CODEXPOOL_ADMIN_TOKEN="e2e-xff-" + base64.b32encode(os.urandom(15)).decode(),
        ADMIN_AUTH_FAILURES_PER_WINDOW=str(LIMIT),
        ADMIN_AUTH_FAILURE_WINDOW_S="300",
    )
    with run_services(
        [ServiceSpec("codexpool_admin_api", env, name="admin-api")], log_dir=tmp_path
    ) as [service]:
        yield service


async def test_a_loopback_peer_cannot_name_other_addresses(
    admin_api: Service, redis: Redis, namespace: str
) -> None:
    statuses = []
    async with httpx.AsyncClient(base_url=admin_api.url, timeout=10) as client:
        for n in range(LIMIT + 2):
            answer = await client.get(
                "/api/me",
                headers={
                    "Authorization": "Bearer cpa_wrong-token",
                    "X-Forwarded-For": f"198.51.100.{n + 1}",
                },
            )
            statuses.append(answer.status_code)
    assert statuses == [401] * LIMIT + [429, 429], statuses
    keys = Keys(namespace)
    assert int(await redis.get(keys.auth_failures("127.0.0.1")) or 0) >= LIMIT
    assert await redis.get(keys.auth_failures("198.51.100.1")) is None
