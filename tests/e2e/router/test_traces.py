"""One streamed request's trace, exported by a real router over OTLP/gRPC and over OTLP/HTTP:
GenAI attributes with the token counts codex-sim reported, the attempt's HTTP client attributes,
and no secret anywhere in what was exported."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any
from urllib.parse import urlsplit

import grpc  # type: ignore[import-untyped]
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.conftest import poll
from tests.e2e.router.conftest import Pool, Sim
from tests.e2e.test_health_trace import Exported, OtlpSink, exporting, otlp  # noqa: F401

REQUEST = {"model": "gpt-5-codex", "input": "hi", "stream": True}
INPUT_TOKENS, OUTPUT_TOKENS = 321, 45


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: OtlpSink) -> None:
        self._sink = sink

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink.receive(request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def otlp_grpc() -> Iterator[tuple[OtlpSink, str]]:
    """An OTLP/gRPC trace receiver (opentelemetry-proto's TraceService) on a free port."""
    sink = OtlpSink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _TraceService(sink), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield sink, f"http://127.0.0.1:{port}"
    server.stop(grace=None).wait(5)


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes(span: Span) -> dict[str, object]:
    return {a.key: _value(a.value) for a in span.attributes}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_a_streamed_request_exports_genai_and_http_client_attributes(
    request: pytest.FixtureRequest, protocol: str, sim: Sim, pool: Pool, routers
) -> None:
    sink, endpoint = request.getfixturevalue("otlp_grpc" if protocol == "grpc" else "otlp")
    await pool.setup(sim, [1], strategy="primary-first")
    sim.patch(1, usage={"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS})
    env = exporting(endpoint) | {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    [router] = routers(1, **env, OTEL_TRACES_SAMPLER="parentbased_always_on")
    headers = {"Authorization": f"Bearer {pool.api_key}"}
    async with (
        httpx.AsyncClient(base_url=router.url, headers=headers, timeout=30) as c,
        c.stream("POST", "/v1/responses", json=REQUEST) as response,
    ):
        assert response.status_code == 200
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert b"event: response.completed" in body

    async def both_spans() -> tuple[Span, Span] | None:
        with sink.lock:
            spans = [e.span for e in sink.spans if e.service == "codexpool-router"]
        # Redis calls are CLIENT spans too: the attempt is the one named after the upstream call.
        server = [s for s in spans if s.name == "POST /v1/responses"]
        client = [s for s in spans if s.name == "POST codex/responses"]
        return (server[0], client[0]) if server and client else None

    server, attempt = await poll(both_spans, timeout_s=30)
    assert (server.kind, attempt.kind) == (Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT)
    assert attempt.trace_id == server.trace_id and attempt.parent_span_id == server.span_id
    found = attributes(attempt)
    upstream = urlsplit(sim.url)
    assert {
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.operation.name": "chat",
        "openai.api.type": "responses",
        "gen_ai.request.model": "gpt-5-codex",
        "gen_ai.usage.input_tokens": INPUT_TOKENS,
        "gen_ai.usage.output_tokens": OUTPUT_TOKENS,
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "server.address": upstream.hostname,
        "server.port": upstream.port,
        "url.full": f"{sim.url}/backend-api/codex/responses",
        "codexpool.provider": "account-1",
    }.items() <= found.items()
    assert str(found["gen_ai.response.id"]).startswith("resp_")
    assert found["gen_ai.response.model"]
    on_server = attributes(server)
    for name in ("gen_ai.response.id", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
        assert on_server[name] == found[name], name
    assert on_server["gen_ai.request.model"] == "gpt-5-codex"

    # Nothing exported carries a credential: neither the provider's tokens nor the agent's key.
    tokens = sim.auth_json(1)["tokens"]
    secrets = [pool.api_key, tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    with sink.lock:
        exported = [str(v) for e in sink.spans for v in attributes(e.span).values()] + [
            e.span.name for e in sink.spans
        ]
    assert exported
    for value in exported:
        assert not any(secret in value for secret in secrets), value
        assert "Bearer" not in value
