"""Instrumentation of FastAPI and of the clients, recording neither headers nor bodies."""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from codexpool_shared.telemetry.redaction import redact_text

# Probes are polled every few seconds by kubelet and Prometheus: spans for them are noise.
# Patterns are searched in the URL without its query string.
EXCLUDED_URLS = "/livez$,/readyz$,/metrics$"


# Instrumentations record the full URL, query string included: a token a client put in a query
# must not reach a span.
_URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")


def _scrub_urls(span: trace.Span, *_: object) -> None:
    if not isinstance(span, ReadableSpan) or not span.attributes:
        return
    for key in _URL_ATTRIBUTES:
        value = span.attributes.get(key)
        if isinstance(value, str) and (clean := redact_text(value)) != value:
            span.set_attribute(key, clean)


async def _scrub_urls_async(span: trace.Span, *_: object) -> None:
    _scrub_urls(span)


def _redact_url(url: object) -> str:
    # aiohttp's instrumentor hands the filter a yarl.URL, not a str.
    return redact_text(str(url))


def instrument_libraries(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
    """Instrument the redis, aiohttp and httpx clients process-wide, once.

    Args:
        tracer_provider: Where client spans go.
        meter_provider: Where client metrics go.
    """
    # aio-pika's instrumentor is left out on purpose: it wraps Exchange.publish, which our
    # publisher calls from a background task, so spans would get the task's context instead of
    # the request's. codexpool_shared.messaging injects and extracts the W3C context itself
    # (docs/reference/reliability-security.md section 2.2).
    # None of these capture headers or bodies: redis statements are sanitized to "CMD ? ?",
    # and the HTTP clients' hooks only redact credential shapes from the recorded URL.
    instrumentors: tuple[tuple[BaseInstrumentor, dict[str, object]], ...] = (
        (RedisInstrumentor(), {}),
        (AioHttpClientInstrumentor(), {"url_filter": _redact_url}),
        (
            HTTPXClientInstrumentor(),
            {"request_hook": _scrub_urls, "async_request_hook": _scrub_urls_async},
        ),
    )
    for instrumentor, options in instrumentors:
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(
                tracer_provider=tracer_provider, meter_provider=meter_provider, **options
            )


def instrument_fastapi(
    app: FastAPI, tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> None:
    """Trace every request ``app`` serves, except the probes and ``/metrics``.

    Args:
        app: The app.
        tracer_provider: Where server spans go.
        meter_provider: Where server metrics go.
    """
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        excluded_urls=EXCLUDED_URLS,
        server_request_hook=_scrub_urls,
        # Sanitizing every name means that even if OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*
        # is set, no header value reaches a span.
        http_capture_headers_sanitize_fields=[".*"],
        exclude_spans=["receive", "send"],
    )
