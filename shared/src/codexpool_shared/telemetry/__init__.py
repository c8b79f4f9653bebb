"""Traces, metrics and logs, configured only by the standard ``OTEL_*`` variables.

An app factory calls::

    telemetry.configure("codexpool-router")   # once per process; later calls are no-ops
    telemetry.instrument_app(app)

with ``telemetry.flush`` as the first callback of its lifespan's exit stack (so it runs last),
and ``main()`` calls ``telemetry.configure_logging()`` for JSON logs on stderr. Tests collect
spans with ``telemetry.capture_spans()`` (or ``add_span_processor``), whatever ran before.
Hot routes served by a plain ASGI handler get their server span from ``TracedRoute``.
Custom span attributes are named in ``codexpool_shared.telemetry.attributes``; ``redact`` scrubs
secrets from anything about to be logged or answered.
"""

from codexpool_shared.telemetry.instrumentation import EXCLUDED_URLS
from codexpool_shared.telemetry.logs import JsonFormatter, RedactingFilter, configure_logging
from codexpool_shared.telemetry.redaction import REDACTED, is_sensitive_key, redact, redact_text
from codexpool_shared.telemetry.server import TracedRoute
from codexpool_shared.telemetry.tracing import (
    Telemetry,
    add_span_processor,
    capture_spans,
    configure,
    configured_service_name,
    flush,
    instrument_app,
)

__all__ = [
    "EXCLUDED_URLS",
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "Telemetry",
    "TracedRoute",
    "add_span_processor",
    "capture_spans",
    "configure",
    "configure_logging",
    "configured_service_name",
    "flush",
    "instrument_app",
    "is_sensitive_key",
    "redact",
    "redact_text",
]
