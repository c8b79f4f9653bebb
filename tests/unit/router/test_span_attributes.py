"""The GenAI and HTTP client attributes on the router's spans, without secrets or queries."""

from __future__ import annotations

import time
from typing import Any, cast

import orjson
from opentelemetry import trace

from codexpool_router.attempt import Result
from codexpool_router.inbound import Inbound
from codexpool_router.outcome import AttemptSpan, Ledger
from codexpool_router.sse import SseTap
from codexpool_router.upstream import attempt_attributes
from codexpool_shared import telemetry
from codexpool_shared.store.selection import Candidate, Selection
from tests.unit.router.test_ledger import FakeCore

COMPLETED = {
    "type": "response.completed",
    "response": {
        "id": "resp_abc",
        "model": "gpt-5-codex",
        "output": [{"type": "message"}],
        "usage": {"input_tokens": 12, "output_tokens": 34, "total_tokens": 46},
    },
}


def test_the_upstream_url_is_recorded_without_credentials_query_or_fragment() -> None:
    found = attempt_attributes("https://user:secret@chatgpt.com/backend-api/codex/responses?k=v#f")
    assert found == {
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.operation.name": "chat",
        "openai.api.type": "responses",
        "http.request.method": "POST",
        "server.address": "chatgpt.com",
        "server.port": 443,
        "url.full": "https://chatgpt.com/backend-api/codex/responses",
    }
    local = attempt_attributes("http://[::1]:8090/codex/responses")
    assert (local["server.address"], local["server.port"], local["url.full"]) == (
        "::1",
        8090,
        "http://[::1]:8090/codex/responses",
    )


def test_a_relayed_stream_puts_the_response_and_its_usage_on_both_spans() -> None:
    telemetry.configure("codexpool-test")
    core = FakeCore()
    with (
        telemetry.capture_spans() as exporter,
        trace.get_tracer(__name__).start_as_current_span("POST /v1/responses") as server,
    ):
        ledger = Ledger(cast(Any, core), "v1", "req_1")
        selection = Selection(
            "agent-1",
            "round-robin",
            3,
            1,
            (Candidate("a", "acct", "env", None, 1, False, 0),),
            0,
            0,
            0,
        )
        inbound = cast(Inbound, type("I", (), {"model": "gpt-5", "stream": True})())
        ledger.routed(selection, inbound)
        attempt = AttemptSpan("POST codex/responses", {})
        tap = SseTap(collect=True)
        result = Result(
            "success", 200, time.perf_counter(), 0.01, response=cast(Any, object()), tap=tap
        )
        ledger.attempt(selection.candidates[0], result, attempt)
        tap.relay(b"event: response.completed\ndata: " + orjson.dumps(COMPLETED) + b"\n\n")
        ledger.relayed("success", None, tap)
        ledger.emit()
        assert server.is_recording()
    spans = {span.name: dict(span.attributes or {}) for span in exporter.get_finished_spans()}
    expected = {
        "gen_ai.response.id": "resp_abc",
        "gen_ai.response.model": "gpt-5-codex",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
    }
    for name in ("POST codex/responses", "POST /v1/responses"):
        assert expected.items() <= spans[name].items(), name
    assert spans["POST codex/responses"]["http.response.status_code"] == 200
    assert spans["POST /v1/responses"]["gen_ai.request.model"] == "gpt-5"
    assert spans["POST /v1/responses"]["gen_ai.operation.name"] == "chat"
    assert ledger.usage is not None and ledger.usage.total_tokens == 46
