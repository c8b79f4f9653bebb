"""Pure pieces of the hot path: body parsing, header allowlist, SSE tap, classification, quota."""

from __future__ import annotations

import orjson
import pytest

from codexpool_router import upstream
from codexpool_router.classify import classify
from codexpool_router.inbound import agent_key_digest, parse_body
from codexpool_router.quota import exhausted_reset, snapshot_from_headers
from codexpool_router.sse import SseTap, error_event
from codexpool_router.upstream import client_headers, passed_back, upstream_headers
from codexpool_shared.errors import ApiError


def event(kind: str, **data: object) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"


def test_parse_body_forces_codex_fields_and_digests_the_session() -> None:
    raw = orjson.dumps(
        {"model": "m", "input": "x", "max_output_tokens": 5, "prompt_cache_key": "abc"}
    )
    inbound = parse_body(raw, None)
    body = orjson.loads(inbound.body)
    assert (body["stream"], body["store"], "max_output_tokens" in body) == (True, False, False)
    assert inbound.stream is False and inbound.model == "m"
    assert len(inbound.session_digest) == 32 and "abc" not in inbound.session_digest
    untouched = orjson.dumps({"model": "m", "stream": True, "store": False})
    assert parse_body(untouched, None).body is untouched
    by_metadata = parse_body(
        orjson.dumps({"model": "m", "client_metadata": {"session_id": "s"}}), None
    )
    assert (
        by_metadata.session_digest == parse_body(orjson.dumps({"model": "m"}), "s").session_digest
    )


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{not json", None),
        (b"[1]", None),
        (b'{"input": "x"}', "model"),
        (b'{"model": 3}', "model"),
    ],
)
def test_parse_body_rejects_bad_input(raw: bytes, param: str | None) -> None:
    with pytest.raises(ApiError) as raised:
        parse_body(raw, None)
    assert raised.value.status_code == 400 and raised.value.param == param


def test_agent_key_is_required() -> None:
    with pytest.raises(ApiError) as raised:
        agent_key_digest({"headers": []})
    assert raised.value.status_code == 401
    digest = agent_key_digest({"headers": [(b"authorization", b"Bearer cpk_x")]})
    assert len(digest) == 64


def test_only_allowlisted_client_headers_travel_upstream() -> None:
    scope = {
        "headers": [
            (b"authorization", b"Bearer cpk_agent"),
            (b"host", b"evil.example"),
            (b"chatgpt-account-id", b"someone-else"),
            (b"session-id", b"s1"),
            (b"originator", b"codex_exec"),
            (b"user-agent", b"codex_exec/0.169.0"),
            (b"cookie", b"x=y"),
        ]
    }
    forwarded, originator, agent = client_headers(scope)
    headers = upstream_headers(
        forwarded,
        originator,
        agent,
        token="tok",
        account_id="acc",
        default_originator="o",
        default_user_agent="ua",
        request_id="req_1",
    )
    assert headers["Authorization"] == "Bearer tok"
    assert headers["chatgpt-account-id"] == "acc"
    assert headers["session_id"] == "s1" and headers["originator"] == "codex_exec"
    assert not {"host", "cookie", "Host"} & set(headers)
    sdk = upstream_headers(
        {},
        None,
        "OpenAI/Python",
        token="t",
        account_id="email_x",
        default_originator="o",
        default_user_agent="ua",
        request_id="r",
    )
    assert sdk["originator"] == "o" and sdk["User-Agent"] == "ua"
    assert "chatgpt-account-id" not in sdk


def test_sse_tap_sees_completion_across_chunk_boundaries() -> None:
    stream = (
        event("response.created", response={"id": "r1", "model": "m"})
        + event("response.output_item.done", output_index=0, item={"type": "message", "id": "i"})
        + event(
            "response.completed",
            response={
                "id": "r1",
                "output": [],
                "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
            },
        )
    )
    tap = SseTap(collect=True)
    for i in range(0, len(stream), 7):
        tap.feed(stream[i : i + 7])
    assert tap.outcome() == ("success", None)
    usage = tap.usage()
    assert usage is not None and usage.total_tokens == 5
    final = tap.final_response()
    assert final["output"] == [{"type": "message", "id": "i"}] and final["model"] == "m"


def test_relay_fills_an_empty_completed_output_even_when_split() -> None:
    item = {"type": "message", "id": "i", "content": [{"type": "output_text", "text": "hi"}]}
    stream = event("response.output_item.done", output_index=0, item=item) + event(
        "response.completed", response={"id": "r1", "output": []}
    )
    for cut in (len(stream) - 10, len(stream) - 60, 5):
        tap = SseTap(collect=True)
        relayed = tap.relay(stream[:cut]) + tap.relay(stream[cut:]) + tap.flush()
        completed = relayed.split(b"\n\n")[-2]
        assert orjson.loads(completed.split(b"data: ", 1)[1])["response"]["output"] == [item]
        assert tap.outcome() == ("success", None)
    plain = SseTap(collect=True)
    assert plain.relay(event("response.output_text.delta", delta="x")) == event(
        "response.output_text.delta", delta="x"
    )


def test_sse_tap_classifies_failures() -> None:
    cut = SseTap()
    cut.feed(event("response.created", response={"id": "r"}))
    assert cut.outcome() == ("stream_error", "stream_closed_before_completed")
    failed = SseTap()
    failed.feed(event("response.failed", response={"error": {"code": "context_length_exceeded"}}))
    assert failed.outcome() == ("client_error", "context_length_exceeded")
    assert b"response.failed" in error_event("req", "upstream_stream_error", "cut")


def test_classify_matrix() -> None:
    usage = orjson.dumps({"error": {"type": "usage_limit_reached", "resets_at": 1770003600}})
    verdict = classify(429, {}, usage, 0)
    assert (verdict.outcome, verdict.resets_at, verdict.failover) == (
        "usage_limit",
        1770003600,
        True,
    )
    relative = orjson.dumps({"error": {"type": "usage_limit_reached", "resets_in_seconds": 60}})
    assert classify(429, {}, relative, 1000).resets_at == 1060
    limited = classify(429, {"retry-after": "7"}, b"{}", 0)
    assert (limited.outcome, limited.retry_after_s) == ("rate_limited", 7.0)
    assert classify(401, {}, b"{}", 0).outcome == "auth_error"
    assert classify(403, {}, b"<html>Cloudflare blocked</html>", 0).outcome == "blocked"
    assert classify(503, {}, b"{}", 0).outcome == "server_error"
    client_error = classify(400, {}, b'{"detail": "Store must be set to false"}', 0)
    assert (client_error.outcome, client_error.failover) == ("client_error", False)


def test_quota_snapshot_from_headers() -> None:
    headers = {
        "x-codex-primary-used-percent": "100",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": "1770003600",
        "x-codex-secondary-used-percent": "40",
        "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-after-seconds": "60",
        "x-codex-plan-type": "plus",
        "x-codex-credits-has-credits": "False",
    }
    snapshot = snapshot_from_headers(headers, now=1770000000.1234)
    assert snapshot is not None and snapshot.primary is not None
    assert snapshot.observed_at_ms == 1770000000123
    assert (snapshot.primary.used_percent, snapshot.primary.resets_at) == (100.0, 1770003600)
    assert snapshot.secondary is not None and snapshot.secondary.resets_at == 1770000060
    assert snapshot.credits_has_credits is False and snapshot.plan_type == "plus"
    assert exhausted_reset(snapshot) == 1770003600
    assert snapshot_from_headers({}) is None


def test_the_client_sees_pass_back_and_codex_headers_lowercased_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = (
        (b"Set-Cookie", b"session=secret"),
        (b"OpenAI-Model", b"gpt-5-codex"),
        (b"X-Codex-Primary-Used-Percent", b"12"),
        (b"x-request-id", b"upstream-id"),
        (b"x-codex-plan-type", b"pro"),
        (b"Retry-After", b"3"),
        (b"cf-ray", b"abc"),
    )
    expected = [
        (b"openai-model", b"gpt-5-codex"),
        (b"x-codex-primary-used-percent", b"12"),
        (b"x-codex-plan-type", b"pro"),
        (b"retry-after", b"3"),
    ]
    # First sight of each name, then the remembered answer: the same headers either way.
    assert passed_back(raw) == expected
    assert passed_back(raw) == expected
    # Past the bound, names are still judged, just not remembered.
    monkeypatch.setattr(upstream, "_PASSED", {})
    monkeypatch.setattr(upstream, "_PASSED_MAX", 2)
    assert passed_back(raw) == expected
    assert len(upstream._PASSED) == 2
