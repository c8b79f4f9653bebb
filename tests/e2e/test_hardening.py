"""Findings of the security probe, against real service processes on the real Redis."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator

import httpx
import pytest

from codexpool_shared.testing.cleanup import delete_namespaces, run_blocking
from codexpool_shared.testing.infra import InfraUrls, unique_namespace
from codexpool_shared.testing.processes import Service, ServiceSpec, free_port, run_services
from tests.e2e.conftest import service_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ADMIN_TOKEN = "e2e-hardening-admin-" + base64.b32encode(os.urandom(15)).decode()
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def stack(
    infra: InfraUrls, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Service]]:
    namespace = unique_namespace()
    admin_port = free_port()
    env = service_env(
        infra,
        namespace,
        CODEXPOOL_ADMIN_TOKEN=ADMIN_TOKEN,
        CODEXPOOL_ADMIN_API_URL=f"http://127.0.0.1:{admin_port}",
        CODEXPOOL_UPSTREAM_BASE_URL="http://127.0.0.1:9/backend-api",
        CODEXPOOL_AUTH_BASE_URL="http://127.0.0.1:9",
    )
    specs = [
        ServiceSpec("codexpool_admin_api", env, port=admin_port, name="admin-api"),
        ServiceSpec("codexpool_ui", env, name="ui"),
        ServiceSpec("codexpool_router", env, name="router"),
        ServiceSpec("codexpool_health", env, name="health"),
    ]
    logs = tmp_path_factory.mktemp("hardening") / "logs"
    try:
        with run_services(specs, log_dir=logs) as services:
            yield {service.name: service for service in services}
    finally:
        run_blocking(delete_namespaces(infra.redis_url, infra.amqp_url, [namespace]))


def test_no_service_builds_a_redirect_from_the_host_header(stack: dict[str, Service]) -> None:
    for name, service in stack.items():
        answer = httpx.get(service.url + "/livez/", headers={"Host": "evil.example"}, timeout=10)
        assert "evil.example" not in answer.headers.get("location", ""), name
        assert answer.status_code == 404, (name, answer.status_code)


def test_api_documents_are_off_by_default(stack: dict[str, Service]) -> None:
    for name in ("admin-api", "router", "health"):
        assert httpx.get(stack[name].url + "/openapi.json", timeout=10).status_code == 404, name
        assert httpx.get(stack[name].url + "/docs", timeout=10).status_code == 404, name


def test_an_audit_cursor_beyond_64_bits_is_a_422(stack: dict[str, Service]) -> None:
    answer = httpx.get(
        stack["admin-api"].url + "/api/audit",
        params={"before": "18446744073709551616-0"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["param"] == "before"


def test_dot_segments_in_ui_paths_stay_names(stack: dict[str, Service]) -> None:
    with httpx.Client(base_url=stack["ui"].url, timeout=10) as browser:
        form = browser.get("/login")
        found = _CSRF.search(form.text)
        assert found, form.text
        signed_in = browser.post("/login", data={"token": ADMIN_TOKEN, "csrf_token": found[1]})
        assert signed_in.status_code == 303
        for dots in ("%2E", "%2E%2E"):
            page = browser.get(f"/agents/{dots}/codex-pool")
            # The admin API was asked for agent '.' or '..' (404), not for the agent list.
            assert page.status_code == 404, page.text
            assert "does not exist" in page.text


def test_the_admin_api_refuses_before_it_reads_or_stores(stack: dict[str, Service]) -> None:
    admin = httpx.Client(base_url=stack["admin-api"].url, timeout=10)
    with admin:
        garbage = admin.post(
            "/api/agents", content=b"{" * 100_000, headers={"Content-Type": "application/json"}
        )
        assert garbage.status_code == 401, garbage.text  # authenticated first, never parsed
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        named = admin.post("/api/agents", json={"id": "ctl", "name": "a\x1b[2J"}, headers=auth)
        assert named.status_code == 422 and named.json()["error"]["param"] == "name"
        created = admin.post("/api/agents", json={"id": "ok-agent"}, headers=auth)
        assert created.status_code == 201, created.text
        rotated = admin.post("/api/agents/ok-agent/keys", json={"revoke_others": 0}, headers=auth)
        assert rotated.status_code == 422, rotated.text


def test_an_unsupported_body_coding_is_the_clients_error(stack: dict[str, Service]) -> None:
    answer = httpx.post(
        stack["router"].url + "/v1/responses",
        content=b"\x00\x01",
        headers={"Content-Encoding": "br", "Authorization": "Bearer cpk_whatever"},
        timeout=10,
    )
    assert answer.status_code == 415, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
