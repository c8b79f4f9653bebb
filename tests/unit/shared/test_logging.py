from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry import trace

from codexpool_shared import telemetry
from codexpool_shared.telemetry import REDACTED, redact, redact_text

# Unsigned, as codex-sim issues them: the signature part is empty.
CANARY_JWT = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJjYW5hcnktdXNlciIsImNhbmFyeSI6dHJ1ZX0."
SIGNED_JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz"

SECRETS = {
    "unsigned jwt": CANARY_JWT,
    "signed jwt": SIGNED_JWT,
    "bearer": "Bearer opaque.canary-Token_123",
    "openai key": "sk-proj-CANARYcanary0123456789",
    "agent key": "cpk_CANARYcanary0123456789abcdef",
    "refresh token": "rt_CANARY.canary-0123456789",
    "refresh_token param": "grant_type=refresh_token&refresh_token=opaqueCANARY0123456789&x=1",
    "json refresh_token": '{"refresh_token": "opaqueCANARY0123456789"}',
    "url password": "amqp://guest:CANARYpassword@rabbit:5672/",
}


def _leaks(text: str) -> bool:
    return "canary" in text.lower() or "c2lnbmF0dXJl" in text or "eyJzdWIi" in text


@pytest.fixture
def json_log() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    level = root.level
    handler = telemetry.configure_logging("INFO", service="codexpool-test")
    yield logging.getLogger("codexpool.test")
    root.removeHandler(handler)
    root.setLevel(level)


def _lines(err: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("secret", SECRETS.values(), ids=SECRETS.keys())
def test_redact_text_removes_every_secret_shape(secret: str) -> None:
    redacted = redact_text(f"upstream said: {secret} (end)")
    assert REDACTED in redacted
    assert not _leaks(redacted), redacted
    assert redacted.startswith("upstream said: ") and redacted.endswith(" (end)")


def test_redact_keeps_ordinary_text_and_the_parts_around_secrets() -> None:
    text = "GET /v1/models 200 in 0.42s for agent my-agent, input_tokens=12, task-runner ok"
    assert redact_text(text) == text
    assert redact_text("Authorization: Bearer abc.def") == f"Authorization: Bearer {REDACTED}"
    assert (
        redact_text("amqp://guest:secretpw@rabbit:5672/") == f"amqp://guest:{REDACTED}@rabbit:5672/"
    )


def test_redact_mappings_by_key_and_by_value() -> None:
    value = {
        "Authorization": "Basic Zm9vOmJhcg==",
        "set-cookie": "session=canary",
        "access_token": "opaque-canary",
        "client_secret": "canary",
        "password": "canary",
        "api_key": "canary",
        "input_tokens": 12,
        "nested": {"refresh_token": "canary", "note": f"token {CANARY_JWT}"},
        "items": [SECRETS["agent key"], ("ok", SECRETS["openai key"])],
        "model": "gpt-5",
    }
    redacted = redact(value)
    assert not _leaks(repr(redacted)), redacted
    assert redacted["input_tokens"] == 12
    assert redacted["model"] == "gpt-5"
    assert redacted["Authorization"] == REDACTED
    assert redacted["items"][1][0] == "ok"
    assert redact(42) == 42


@pytest.mark.parametrize("secret", SECRETS.values(), ids=SECRETS.keys())
def test_log_message_args_and_extra_are_redacted(
    json_log: logging.Logger, capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    json_log.info(f"in the message {secret}")
    json_log.info("in the args %s and %r", secret, {"k": secret})
    json_log.info("in the extra", extra={"detail": secret, "upstream": {"body": secret}})
    json_log.warning("in a sensitive extra key", extra={"refresh_token": "opaqueCANARY"})

    err = capsys.readouterr().err
    assert not _leaks(err), err
    lines = _lines(err)
    assert len(lines) == 4
    assert lines[0]["message"] == f"in the message {redact_text(secret)}"
    assert lines[2]["detail"] == redact_text(secret)
    assert lines[3]["refresh_token"] == REDACTED


def test_exception_text_is_redacted(
    json_log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        raise RuntimeError(f"refresh failed for {SECRETS['refresh token']}")
    except RuntimeError:
        json_log.exception("token refresh failed")

    err = capsys.readouterr().err
    assert not _leaks(err), err
    (line,) = _lines(err)
    assert line["level"] == "ERROR"
    assert "RuntimeError: refresh failed for [REDACTED]" in line["exception"]


def test_json_line_shape_and_trace_ids(
    json_log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry.configure("codexpool-test")
    json_log.info("outside", extra={"attempt": 2, "provider": "acct-1"})
    with trace.get_tracer(__name__).start_as_current_span("request") as span:
        json_log.info("inside %s", "a span")
    context = span.get_span_context()

    outside, inside = _lines(capsys.readouterr().err)
    assert outside["message"] == "outside"
    assert outside["level"] == "INFO"
    assert outside["logger"] == "codexpool.test"
    assert outside["service"] == "codexpool-test"
    assert outside["attempt"] == 2 and outside["provider"] == "acct-1"
    assert outside["time"].endswith("+00:00")
    assert "trace_id" not in outside and "span_id" not in outside

    assert inside["message"] == "inside a span"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")


def test_configure_logging_is_idempotent(
    json_log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    again = telemetry.configure_logging("WARNING", service="codexpool-again")
    assert sum(h is again for h in logging.getLogger().handlers) == 1
    json_log.info("dropped")
    json_log.warning("kept")
    (line,) = _lines(capsys.readouterr().err)
    assert (line["message"], line["service"]) == ("kept", "codexpool-again")


def test_canary_jwt_at_info_never_reaches_the_output(
    json_log: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    uvicorn = logging.getLogger("uvicorn.error")
    json_log.info(CANARY_JWT)
    json_log.info("token: %s", CANARY_JWT)
    json_log.info("headers", extra={"headers": {"authorization": f"Bearer {CANARY_JWT}"}})
    uvicorn.info("id_token=%s", CANARY_JWT)

    err = capsys.readouterr().err
    assert len(_lines(err)) == 4
    assert CANARY_JWT not in err
    assert CANARY_JWT.split(".")[1] not in err
