"""JSON logs on stderr, one object per line, carrying the current trace and redacted.

``configure_logging()`` installs one handler on the root logger; every library logger (uvicorn,
aio-pika, ours) propagates to it. Each line holds ``time``, ``level``, ``logger``, ``message``,
``service``, ``trace_id`` and ``span_id`` (hex, when a span is recording), any ``extra=`` fields
and ``exception``. A ``RedactingFilter`` on the handler scrubs the message, its arguments and
the extra fields before anything is written.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

from codexpool_shared.telemetry.redaction import REDACTED, is_sensitive_key, redact, redact_text
from codexpool_shared.telemetry.tracing import configured_service_name

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}


class RedactingFilter(logging.Filter):
    """Scrubs secrets from a record's message, arguments, extra fields and exception text.

    The message is formatted with its arguments first and the result redacted, so a secret
    hidden in any argument's ``str()`` is caught; the record then carries no arguments.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it.

        Args:
            record: The record about to be handled.

        Returns:
            Always True.
        """
        record.msg = redact_text(record.getMessage())
        record.args = None
        for key, value in _extra_fields(record).items():
            setattr(record, key, REDACTED if is_sensitive_key(key) else redact(value))
        # Formatters reuse a cached exc_text, so redacting it here covers every handler.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON with the current trace and span ids."""

    def __init__(self, service: str) -> None:
        """Name ``service`` on every line.

        Args:
            service: The ``service`` field of every line.
        """
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object, without a trailing newline.

        Args:
            record: The record.

        Returns:
            The line.
        """
        line: dict[str, Any] = _extra_fields(record)
        line.update(
            time=datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
            service=self.service,
        )
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            line["trace_id"] = format(context.trace_id, "032x")
            line["span_id"] = format(context.span_id, "016x")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=_text, option=orjson.OPT_NON_STR_KEYS).decode()


def _text(value: object) -> str:
    # Objects orjson cannot serialize are written as their redacted str().
    return redact_text(str(value))


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, as pytest's capture swaps it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: int | str = "INFO", *, service: str | None = None) -> logging.Handler:
    """Send every log record, redacted, as JSON lines to stderr.

    Idempotent: a second call updates the level and service name of the handler the first one
    installed instead of adding another.

    Args:
        level: The root logger's level.
        service: The ``service`` field of every line; by default the ``service.name`` of the
            telemetry ``configure()`` set up, else ``"codexpool"``.

    Returns:
        The installed handler.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter(service or configured_service_name() or "codexpool"))
    root.setLevel(level)
    return handler
