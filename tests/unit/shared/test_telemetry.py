from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from codexpool_shared import telemetry
from codexpool_shared.config import OtlpProtocol, TelemetrySettings
from codexpool_shared.telemetry import attributes, instrumentation, tracing

_OTEL_VARS = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
)


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_nothing_configured_means_no_export(otel_env: pytest.MonkeyPatch) -> None:
    settings = TelemetrySettings()
    assert settings.span_exporters == frozenset()
    assert settings.metric_exporters == frozenset()


@pytest.mark.parametrize(
    ("env", "spans", "metrics"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, {"otlp"}, {"otlp"}),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, {"otlp"}, set()),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, set(), {"otlp"}),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, {"otlp"}, set()),
        (
            {"OTEL_TRACES_EXPORTER": "console,otlp", "OTEL_METRICS_EXPORTER": "none"},
            {"console", "otlp"},
            set(),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"},
            set(),
            {"otlp"},
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            {"otlp"},
            {"otlp"},
        ),
    ],
)
def test_exporters_follow_the_standard_variables(
    otel_env: pytest.MonkeyPatch, env: dict[str, str], spans: set[str], metrics: set[str]
) -> None:
    for name, value in env.items():
        otel_env.setenv(name, value)
    settings = TelemetrySettings()
    assert settings.span_exporters == spans
    assert settings.metric_exporters == metrics


@pytest.mark.parametrize(
    ("env", "spans", "metrics"),
    [
        ({}, "http/protobuf", "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc", "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http/protobuf", "http/protobuf"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            "http/protobuf",
            "grpc",
        ),
        ({"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}, "http/protobuf", "grpc"),
    ],
)
def test_the_otlp_protocol_follows_the_standard_variables(
    otel_env: pytest.MonkeyPatch, env: dict[str, str], spans: str, metrics: str
) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    for name, value in env.items():
        otel_env.setenv(name, value)
    settings = TelemetrySettings()
    assert (settings.span_protocol, settings.metric_protocol) == (spans, metrics)
    assert settings.span_exporters == {"otlp"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: unsupported exporter"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: unsupported OTLP protocol 'http' "
            r"\(supported: grpc, http/protobuf\)",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: unsupported OTLP protocol 'http/json'",
        ),
    ],
)
def test_unsupported_exporters_fail_clearly(
    otel_env: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        otel_env.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        TelemetrySettings()


def test_resource_takes_the_default_name_unless_the_environment_names_one(
    otel_env: pytest.MonkeyPatch,
) -> None:
    assert tracing._resource("codexpool-router").attributes[SERVICE_NAME] == "codexpool-router"

    otel_env.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "service.namespace=codexpool,service.name=from-attrs"
    )
    resource = tracing._resource("codexpool-router")
    assert resource.attributes[SERVICE_NAME] == "from-attrs"
    assert resource.attributes["service.namespace"] == "codexpool"

    otel_env.setenv("OTEL_SERVICE_NAME", "from-env")
    assert tracing._resource("codexpool-router").attributes[SERVICE_NAME] == "from-env"


@pytest.mark.parametrize(
    ("protocol", "span_exporter", "metric_exporter"),
    [
        ("http/protobuf", OTLPSpanExporter, OTLPMetricExporter),
        ("grpc", GrpcSpanExporter, GrpcMetricExporter),
    ],
)
def test_otlp_exporters_are_built_only_when_asked(
    otel_env: pytest.MonkeyPatch,
    protocol: OtlpProtocol,
    span_exporter: type[object],
    metric_exporter: type[object],
) -> None:
    resource = Resource.create({SERVICE_NAME: "t"})
    quiet = tracing._build_tracer_provider(resource, frozenset(), protocol)
    assert quiet._active_span_processor._span_processors == ()
    assert tracing._build_meter_provider(resource, frozenset(), protocol)._metric_readers == []

    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9/")
    loud = tracing._build_tracer_provider(resource, frozenset({"otlp"}), protocol)
    meters = tracing._build_meter_provider(resource, frozenset({"otlp"}), protocol)
    try:
        (processor,) = loud._active_span_processor._span_processors
        assert isinstance(processor, BatchSpanProcessor)
        assert isinstance(processor._batch_processor._exporter, span_exporter)
        (reader,) = meters._metric_readers
        assert isinstance(reader, PeriodicExportingMetricReader)
        assert isinstance(reader._exporter, metric_exporter)
    finally:
        # Shutdown tries one last export: nothing was recorded, so nothing is sent.
        loud.shutdown()
        meters.shutdown()


def test_configure_twice_returns_the_same_providers(otel_env: pytest.MonkeyPatch) -> None:
    first = telemetry.configure("codexpool-test")
    second = telemetry.configure("codexpool-other")
    assert second is first
    assert isinstance(first.tracer_provider, TracerProvider)
    assert isinstance(first.meter_provider, MeterProvider)
    assert trace.get_tracer_provider() is first.tracer_provider
    assert telemetry.configured_service_name() == first.service_name


def test_add_span_processor_after_configure() -> None:
    telemetry.configure("codexpool-test")
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    telemetry.add_span_processor(processor)
    try:
        with trace.get_tracer(__name__).start_as_current_span("unit-of-work") as span:
            span.set_attribute(attributes.PROVIDER, "acct-1")
    finally:
        telemetry.configure("ignored").remove_span_processor(processor)
    with trace.get_tracer(__name__).start_as_current_span("after-removal"):
        pass

    (finished,) = exporter.get_finished_spans()
    assert finished.name == "unit-of-work"
    assert finished.attributes == {attributes.PROVIDER: "acct-1"}


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, list[str]]:
        return {"data": []}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    telemetry.instrument_app(app)
    return app


def test_instrumented_app_records_a_server_span_without_headers() -> None:
    telemetry.configure("codexpool-test")
    canary = "cpk_canaryCANARYcanary0123456789"
    with telemetry.capture_spans() as spans, TestClient(_app()) as client:
        assert client.get("/livez").status_code == 200
        response = client.get(
            f"/v1/models?refresh_token={canary}",
            headers={"Authorization": f"Bearer {canary}", "Cookie": "s=1"},
        )
        assert response.status_code == 200

    (server,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.name == "GET /v1/models"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/models"
    assert (
        server.attributes.get(
            "http.status_code", server.attributes.get("http.response.status_code")
        )
        == 200
    )
    assert all(s.kind is SpanKind.SERVER for s in spans.get_finished_spans())
    everything = repr([(s.name, dict(s.attributes or {})) for s in spans.get_finished_spans()])
    assert canary not in everything
    assert "livez" not in everything


def test_client_url_hooks_redact_credentials_in_the_query() -> None:
    telemetry.configure("codexpool-test")
    with telemetry.capture_spans() as spans:
        with trace.get_tracer(__name__).start_as_current_span("GET") as span:
            span.set_attribute("url.full", "https://up/x?access_token=opaque-canary-123&a=1")
            span.set_attribute("http.url", "https://up/ok?a=1")
            instrumentation._scrub_urls(span, object())
    (finished,) = spans.get_finished_spans()
    assert finished.attributes == {
        "url.full": "https://up/x?access_token=[REDACTED]&a=1",
        "http.url": "https://up/ok?a=1",
    }


def test_spans_of_another_block_are_not_captured() -> None:
    telemetry.configure("codexpool-test")
    with telemetry.capture_spans() as first:
        pass
    with telemetry.capture_spans() as second:
        with trace.get_tracer(__name__).start_as_current_span("second-only"):
            pass
    assert first.get_finished_spans() == ()
    assert [s.name for s in second.get_finished_spans()] == ["second-only"]


def test_attribute_registry_is_prefixed() -> None:
    assert attributes.ALL
    assert all(name.startswith("codexpool.") for name in attributes.ALL)
