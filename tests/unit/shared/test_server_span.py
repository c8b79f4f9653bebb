"""TracedRoute: the hot routes' lean SERVER span."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from opentelemetry.trace import SpanKind, StatusCode, get_current_span
from starlette.types import Receive, Scope, Send

from codexpool_shared import telemetry

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
CANARY = "cpk_canaryCANARYcanary0123456789"


async def answer_503(scope: Scope, receive: Receive, send: Send) -> None:
    get_current_span().set_attribute("seen.by.handler", True)
    await send({"type": "http.response.start", "status": 503, "headers": []})
    await send({"type": "http.response.body", "body": b"busy"})


async def crash(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("boom")


def test_span_follows_http_conventions_and_the_callers_trace() -> None:
    telemetry.configure("codexpool-test")
    route = telemetry.TracedRoute(answer_503, "/v1/responses")
    with telemetry.capture_spans() as spans:
        response = TestClient(route).post(
            "/v1/responses?token=" + CANARY,
            headers={
                "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01",
                "Authorization": f"Bearer {CANARY}",
                "User-Agent": "codex_cli_rs/0.169.0",
            },
        )
    assert response.status_code == 503
    (span,) = spans.get_finished_spans()
    assert (span.name, span.kind) == ("POST /v1/responses", SpanKind.SERVER)
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == PARENT_TRACE
    assert f"{span.parent.span_id:016x}" == PARENT_SPAN
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.route"] == "/v1/responses"
    assert attributes["url.path"] == "/v1/responses"
    assert attributes["http.response.status_code"] == 503
    assert attributes["error.type"] == "503"
    assert attributes["user_agent.original"] == "codex_cli_rs/0.169.0"
    assert attributes["seen.by.handler"] is True, "the span is current inside the handler"
    assert span.status.status_code is StatusCode.ERROR
    assert CANARY not in repr(attributes)


def test_an_escaping_exception_is_recorded() -> None:
    telemetry.configure("codexpool-test")
    route = telemetry.TracedRoute(crash, "/v1/responses")
    with telemetry.capture_spans() as spans, pytest.raises(RuntimeError, match="boom"):
        TestClient(route).post("/v1/responses")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
