"""How long a service process keeps an idle client connection (``CODEXPOOL_HTTP_KEEPALIVE_S``).

A client reuses an idle keep-alive connection until its own idle timeout; a service that closes
the connection first can do so just as a request arrives on it, and that request fails. The
services keep idle connections longer than their clients do.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.processes import Service, run_service
from tests.e2e.conftest import service_env

pytestmark = pytest.mark.timeout(60)

PROBE = b"GET /livez HTTP/1.1\r\nhost: test\r\n\r\n"


def _answered(connection: socket.socket) -> bool:
    """Send a probe on ``connection`` and read its whole answer; whether it was a 200."""
    connection.sendall(PROBE)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
    assert length is not None, head
    while len(body) < int(length.group(1)):
        chunk = connection.recv(65536)
        assert chunk, "the connection closed mid-answer"
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def _connect(service: Service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=10)


def test_an_idle_connection_outlives_the_clients_own_idle_timeout(
    tmp_path: Path, infra: InfraUrls, namespace: str
) -> None:
    env = service_env(infra, namespace)
    with run_service("codexpool_admin_api", env=env, log_dir=tmp_path, name="admin") as admin:
        with _connect(admin) as connection:
            assert _answered(connection)
            # httpx (the openai SDK) drops an idle connection after 5 s, uvicorn's default too.
            time.sleep(6)
            assert _answered(connection)


def test_the_setting_closes_an_idle_connection_after_its_time(
    tmp_path: Path, infra: InfraUrls, namespace: str
) -> None:
    env = service_env(infra, namespace, CODEXPOOL_HTTP_KEEPALIVE_S="1")
    with run_service("codexpool_admin_api", env=env, log_dir=tmp_path, name="admin") as admin:
        with _connect(admin) as connection:
            assert _answered(connection)
            idle = time.monotonic()
            # Well before uvicorn's own 5 s, with room for a busy machine.
            connection.settimeout(4)
            assert connection.recv(65536) == b""
            assert time.monotonic() - idle >= 0.9
