"""SIGTERM to health, admin-api and ui: readiness fails at once and, with nothing in flight, each
exits by itself at once (``codexpool_shared.drain``; the router's streams: router/test_drain.py)."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path

import httpx
from redis.asyncio import Redis

from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.processes import Service, ServiceSpec, free_port, run_services
from tests.e2e.conftest import service_env


def readiness_fails_within(service: Service, seconds: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if httpx.get(service.url + "/readyz", timeout=0.5).status_code == 503:
                return
        except httpx.TransportError:  # the listener is closed: refused
            return
        time.sleep(0.02)
    raise AssertionError(f"{service.name}: /readyz still answered 200 {seconds} s after SIGTERM")


def exits_within(service: Service, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while service.process.poll() is None:
        assert time.monotonic() < deadline, f"{service.name} still running {seconds} s later"
        time.sleep(0.05)
    assert service.process.returncode in (0, -signal.SIGTERM), service.process.returncode
    log = service.log()
    assert "Traceback" not in log, log[-3000:]
    assert "Application shutdown complete" in log, log[-3000:]


def test_every_other_service_fails_readiness_and_exits_on_sigterm(
    infra: InfraUrls, namespace: str, redis: Redis, tmp_path: Path
) -> None:
    admin_port = free_port()
    env = service_env(
        infra,
        namespace,
        CODEXPOOL_ADMIN_TOKEN="e2e-drain-" + base64.b32encode(os.urandom(15)).decode(),
        CODEXPOOL_ADMIN_API_URL=f"http://127.0.0.1:{admin_port}",
    )
    specs = [
        ServiceSpec("codexpool_health", env, name="health"),
        ServiceSpec("codexpool_admin_api", env, port=admin_port, name="admin-api"),
        ServiceSpec("codexpool_ui", env, name="ui"),
    ]
    with run_services(specs, log_dir=tmp_path / "logs") as services:
        # The UI first: its readiness is the admin API's.
        for service in reversed(services):
            service.process.send_signal(signal.SIGTERM)
            readiness_fails_within(service, 1.0)
            exits_within(service, 10)
