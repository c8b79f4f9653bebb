"""Every service: the app factory's lifespan opens its clients and closes them on exit."""

from __future__ import annotations

import base64
import importlib
import os

import pytest
import redis
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from codexpool_shared import telemetry
from codexpool_shared.testing.infra import InfraUrls

SERVICES = ["codexpool_router", "codexpool_health", "codexpool_admin_api"]


def _settings(package: str, infra: InfraUrls, namespace: str) -> object:
    config = importlib.import_module(f"{package}.config")
    return config.Settings(
        REDIS_URL=infra.redis_url,
        AMQP_URL=infra.amqp_url,
        CODEXPOOL_NAMESPACE=namespace,
        CODEXPOOL_SECRET_KEY=base64.b64encode(os.urandom(32)).decode(),
        CODEXPOOL_ADMIN_TOKEN="shell-test-admin-token-0123456789",
    )


def _connections_named(infra: InfraUrls, name: str) -> int:
    probe = redis.Redis.from_url(infra.redis_url, socket_timeout=5)
    try:
        return sum(1 for c in probe.client_list() if c.get("name") == name)
    finally:
        probe.close()


@pytest.mark.parametrize("package", SERVICES)
def test_lifespan_opens_and_closes_clients(package: str, infra: InfraUrls, namespace: str) -> None:
    app_module = importlib.import_module(f"{package}.app")
    app = app_module.create_app(_settings(package, infra, namespace))
    with TestClient(app) as client:
        assert client.get("/livez").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["redis"] == "ok"
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        # Process and runtime metrics on every service's own registry.
        for name in ("process_cpu_seconds_total", "python_info", "python_gc_objects_collected"):
            assert f"\n{name}" in metrics.text, name
        assert _connections_named(infra, namespace) > 0
    assert _connections_named(infra, namespace) == 0


@pytest.mark.parametrize("package", SERVICES)
def test_readiness_fails_when_redis_is_unreachable(package: str, namespace: str) -> None:
    app_module = importlib.import_module(f"{package}.app")
    unreachable = InfraUrls("redis://127.0.0.1:1/0", "amqp://guest:guest@127.0.0.1:1/", "none")
    app = app_module.create_app(_settings(package, unreachable, namespace))
    try:
        with TestClient(app) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"] == "failing"
    except Exception as exc:  # a service may refuse to start without its broker
        pytest.fail(f"{package} failed to start without Redis: {exc!r}")


@pytest.mark.parametrize("package", SERVICES)
def test_lifespan_exit_exports_buffered_spans(
    package: str, infra: InfraUrls, namespace: str
) -> None:
    app_module = importlib.import_module(f"{package}.app")
    app = app_module.create_app(_settings(package, infra, namespace))
    exporter = InMemorySpanExporter()
    # A batch processor that would hold spans for a minute: only the lifespan's flush exports
    # them before the process could exit.
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=60_000)
    telemetry.add_span_processor(processor)
    try:
        with TestClient(app) as client:
            client.get("/no-such-page")
            assert not exporter.get_finished_spans()
        assert any(span.kind is SpanKind.SERVER for span in exporter.get_finished_spans())
    finally:
        telemetry.configure("codexpool-test").remove_span_processor(processor)
        processor.shutdown()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("package", SERVICES)
def test_no_redirect_is_built_from_the_host_header(
    package: str, infra: InfraUrls, namespace: str
) -> None:
    app_module = importlib.import_module(f"{package}.app")
    app = app_module.create_app(_settings(package, infra, namespace))
    with TestClient(app, follow_redirects=False) as client:
        answer = client.get("/livez/", headers={"Host": "evil.example"})
    assert "evil.example" not in answer.headers.get("location", "")
    assert answer.status_code == 404


@pytest.mark.parametrize("package", SERVICES)
@pytest.mark.parametrize("docs", [False, True])
def test_the_api_document_is_served_only_when_asked_for(
    package: str, docs: bool, infra: InfraUrls, namespace: str
) -> None:
    settings = _settings(package, infra, namespace)
    app_module = importlib.import_module(f"{package}.app")
    app = app_module.create_app(settings.model_copy(update={"api_docs": docs}))  # type: ignore[attr-defined]
    with TestClient(app) as client:
        document, page = client.get("/openapi.json"), client.get("/docs")
    assert (document.status_code, page.status_code) == ((200, 200) if docs else (404, 404))
