# ruff: noqa: F811 - the router e2e fixtures are imported by name and requested as parameters
"""One client request makes one trace across processes: the router's server span, its upstream
attempt, the publish to RabbitMQ and the health service's consume span, exported over OTLP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.conftest import poll
from tests.e2e.health_stack import Stack, stack  # noqa: F401


@dataclass(frozen=True)
class Exported:
    service: str
    span: Span


@dataclass
class OtlpSink:
    """A minimal OTLP/HTTP trace receiver: every span posted to ``/v1/traces``."""

    spans: list[Exported] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(Exported(service, s) for s in scope_spans.spans)


@pytest.fixture
def otlp() -> Iterator[tuple[OtlpSink, str]]:
    sink = OtlpSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/v1/traces":
                sink.receive(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sink, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def exporting(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


async def test_one_trace_from_the_router_to_the_health_consumer(
    stack: Stack, otlp: tuple[OtlpSink, str]
) -> None:
    sink, endpoint = otlp
    await stack.pool([1, 2])
    stack.start("codexpool_health", **exporting(endpoint))
    router = stack.start("codexpool_router", **exporting(endpoint))
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c:
        response = await c.post("/v1/responses", json={"model": "gpt-5-codex", "input": "hi"})
    assert response.status_code == 200

    async def whole_trace() -> tuple[Exported, list[Exported]] | None:
        # Each process exports in its own batches: wait until every expected span has arrived.
        with sink.lock:
            spans = list(sink.spans)
        consumers = [
            e
            for e in spans
            if e.service == "codexpool-health" and e.span.kind == Span.SPAN_KIND_CONSUMER
        ]
        if len(consumers) != 1:
            return None
        in_trace = [e for e in spans if e.span.trace_id == consumers[0].span.trace_id]
        kinds = {(e.service, e.span.kind) for e in in_trace}
        expected = {
            ("codexpool-router", Span.SPAN_KIND_SERVER),
            ("codexpool-router", Span.SPAN_KIND_CLIENT),
            ("codexpool-router", Span.SPAN_KIND_PRODUCER),
        }
        applied = any(e.span.name == "apply outcomes" for e in in_trace)
        return (consumers[0], in_trace) if expected <= kinds and applied else None

    consume, in_trace = await poll(whole_trace, timeout_s=30)
    by_id = {e.span.span_id: e for e in in_trace}
    server = [e for e in in_trace if e.span.kind == Span.SPAN_KIND_SERVER]
    assert [e.service for e in server] == ["codexpool-router"]
    assert any(
        e.span.kind == Span.SPAN_KIND_CLIENT and e.service == "codexpool-router" for e in in_trace
    ), "the upstream attempt"
    producer = by_id[consume.span.parent_span_id]
    assert (producer.service, producer.span.kind) == ("codexpool-router", Span.SPAN_KIND_PRODUCER)
    applied = [e for e in in_trace if e.span.parent_span_id == consume.span.span_id]
    assert [e.span.name for e in applied] == ["apply outcomes"]
