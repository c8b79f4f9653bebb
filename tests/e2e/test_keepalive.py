"""How long a service process keeps an idle client connection (``CODEXPOOL_HTTP_KEEPALIVE_S``).

A client reuses an idle keep-alive connection until its own idle timeout; a service that closes
the connection first can do so just as a request arrives on it, and that request fails. The
services keep idle connections longer than their clients do. (``test_images`` checks that each
image's entrypoint honours the setting.)
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.keepalive import answered, connect, idle_until_closed
from codexpool_shared.testing.processes import run_service
from tests.e2e.conftest import service_env

pytestmark = pytest.mark.timeout(60)


def test_an_idle_connection_outlives_the_clients_own_idle_timeout(
    tmp_path: Path, infra: InfraUrls, namespace: str
) -> None:
    env = service_env(infra, namespace)
    with run_service("codexpool_admin_api", env=env, log_dir=tmp_path, name="admin") as admin:
        with connect(admin.port) as connection:
            assert answered(connection)
            # httpx (the openai SDK) drops an idle connection after 5 s, uvicorn's default too.
            time.sleep(6)
            assert answered(connection)


def test_the_setting_closes_an_idle_connection_after_its_time(
    tmp_path: Path, infra: InfraUrls, namespace: str
) -> None:
    env = service_env(infra, namespace, CODEXPOOL_HTTP_KEEPALIVE_S="1")
    with run_service("codexpool_admin_api", env=env, log_dir=tmp_path, name="admin") as admin:
        # Well before uvicorn's own 5 s, with room for a busy machine.
        assert idle_until_closed(admin.port, deadline_s=4) >= 0.9
