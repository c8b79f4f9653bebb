"""Spans recorded when their call is over, made when the request's answer is over."""

from __future__ import annotations

import asyncio
import time

from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import Receive, Scope, Send

from codexpool_shared import telemetry
from codexpool_shared.telemetry import deferred

tracer = trace.get_tracer(__name__)


def test_outside_a_request_the_span_is_made_at_once_with_its_own_times() -> None:
    telemetry.configure("codexpool-test")
    with telemetry.capture_spans() as spans, tracer.start_as_current_span("parent") as parent:
        started = time.time_ns() - 5_000_000
        deferred.finished(tracer, "EVALSHA", SpanKind.CLIENT, {"db.system": "redis"}, started)
        [made] = spans.get_finished_spans()
    assert (made.name, made.kind, made.start_time) == ("EVALSHA", SpanKind.CLIENT, started)
    assert made.end_time is not None and made.end_time - started >= 5_000_000
    assert made.parent is not None
    assert made.parent.span_id == parent.get_span_context().span_id
    assert dict(made.attributes or {}) == {"db.system": "redis"}
    assert made.status.status_code is StatusCode.UNSET


def test_under_a_traced_route_the_spans_are_made_after_the_answer_as_children() -> None:
    telemetry.configure("codexpool-test")
    seen_during: list[int] = []
    late: list[asyncio.Task[None]] = []

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        deferred.finished(
            tracer, "EVALSHA", SpanKind.CLIENT, {}, time.time_ns() - 1000, error="TimeoutError"
        )
        seen_during.append(len(spans.get_finished_spans()))

        async def after_the_request() -> None:
            await asyncio.sleep(0.05)
            # This task still has the request's context: the records are no longer in it.
            request = deferred._request.get()
            assert request is not None and not request.open and request.spans == []
            deferred.finished(tracer, "late", SpanKind.INTERNAL, {}, time.time_ns())

        late.append(asyncio.create_task(after_the_request()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def outlive(scope: Scope, receive: Receive, send: Send) -> None:
        await telemetry.TracedRoute(handler, "/v1/responses")(scope, receive, send)
        await late[0]

    with telemetry.capture_spans() as spans:
        assert TestClient(outlive).post("/v1/responses").status_code == 200
    by_name = {span.name: span for span in spans.get_finished_spans()}
    assert seen_during == [0], "nothing is made while the request is answered"
    server, child = by_name["POST /v1/responses"], by_name["EVALSHA"]
    assert server.context is not None and child.parent is not None
    assert child.parent.span_id == server.context.span_id
    assert child.status.status_code is StatusCode.ERROR
    assert child.status.description == "TimeoutError"
    assert server.end_time is not None and child.end_time is not None
    assert child.end_time <= server.end_time
    assert dict(server.attributes or {})["http.response.status_code"] == 200
    # Recorded by a task the request started, after its spans were made: made at once.
    assert by_name["late"].parent is not None
    assert by_name["late"].parent.span_id == server.context.span_id
