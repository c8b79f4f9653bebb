"""Tracer and meter providers configured from the standard ``OTEL_*`` variables, once per process.

OpenTelemetry refuses to replace a global provider, and tests build many apps in one process,
so ``configure()`` builds the providers the first time and returns the same ``Telemetry`` on
every later call. Exporters are installed only when ``OTEL_*`` asks for them (see
``TelemetrySettings``), over the OTLP protocol ``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL``
names (``http/protobuf`` by default, or ``grpc``); the SDK reads every other ``OTEL_*`` variable
(endpoint, headers, timeouts, sampler, batch sizes, ``OTEL_SDK_DISABLED``) itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from codexpool_shared.config import (
    OtlpProtocol,
    TelemetrySettings,
    prefer_stable_http_conventions,
)
from codexpool_shared.telemetry.instrumentation import instrument_fastapi, instrument_libraries


class _FanOutSpanProcessor(SpanProcessor):
    """Span processors that can be added and removed after the provider is built.

    The SDK's provider only ever adds processors; tests attach an in-memory exporter per test
    and must detach it again, or every later test's spans pile up in it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processors: tuple[SpanProcessor, ...] = ()

    def add(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = (*self._processors, processor)

    def remove(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = tuple(p for p in self._processors if p is not processor)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._processors)


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The process's tracer and meter providers, as ``configure()`` set them up."""

    service_name: str
    """``service.name`` of the resource: ``OTEL_SERVICE_NAME`` or the first configured name."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    span_exporters: frozenset[str]
    """Exporters spans go to (``otlp``, ``console``); empty when spans are not exported."""

    metric_exporters: frozenset[str]
    """Exporters metrics go to; empty when metrics are not exported."""

    span_protocol: OtlpProtocol
    """The OTLP protocol of the ``otlp`` span exporter."""

    metric_protocol: OtlpProtocol
    """The OTLP protocol of the ``otlp`` metric exporter."""

    _extra: _FanOutSpanProcessor = field(repr=False)

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """Send every span that ends from now on to ``processor`` too.

        Args:
            processor: For example ``SimpleSpanProcessor(InMemorySpanExporter())``.
        """
        self._extra.add(processor)

    def remove_span_processor(self, processor: SpanProcessor) -> None:
        """Stop sending spans to a processor added with ``add_span_processor``.

        Args:
            processor: The processor; it is not shut down.
        """
        self._extra.remove(processor)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export whatever spans and metrics are buffered (call before exiting).

        Args:
            timeout_millis: How long to wait for each provider.

        Returns:
            True when both providers flushed in time.
        """
        spans = self.tracer_provider.force_flush(timeout_millis)
        return self.meter_provider.force_flush(timeout_millis) and spans


_lock = threading.Lock()
_configured: Telemetry | None = None


def configure(service_name: str, *, settings: TelemetrySettings | None = None) -> Telemetry:
    """Set up tracing and metrics for the process, once; later calls return the same result.

    Call it from the app factory before ``instrument_app``. It also instruments the redis,
    aiohttp and httpx clients globally.

    Args:
        service_name: ``service.name`` when neither ``OTEL_SERVICE_NAME`` nor
            ``OTEL_RESOURCE_ATTRIBUTES`` names one. Only the first call's name counts.
        settings: Which exporters to install; read from ``OTEL_*`` when omitted.

    Returns:
        The process's telemetry.

    Raises:
        pydantic.ValidationError: An ``OTEL_*`` exporter or protocol is not supported.
    """
    global _configured
    with _lock:
        if _configured is not None:
            return _configured
        settings = settings or TelemetrySettings()
        prefer_stable_http_conventions()
        resource = _resource(service_name)
        extra = _FanOutSpanProcessor()
        tracer_provider = _tracer_provider(
            resource, settings.span_exporters, settings.span_protocol
        )
        tracer_provider.add_span_processor(extra)
        meter_provider = _meter_provider(
            resource, settings.metric_exporters, settings.metric_protocol
        )
        instrument_libraries(tracer_provider, meter_provider)
        _configured = Telemetry(
            service_name=str(tracer_provider.resource.attributes.get(SERVICE_NAME, service_name)),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            span_exporters=settings.span_exporters,
            metric_exporters=settings.metric_exporters,
            span_protocol=settings.span_protocol,
            metric_protocol=settings.metric_protocol,
            _extra=extra,
        )
        return _configured


def configured_service_name() -> str | None:
    """The ``service.name`` ``configure()`` settled on, or None before it ran."""
    return _configured.service_name if _configured else None


def _resource(service_name: str) -> Resource:
    # Environment attributes override the default name, as the specification requires.
    return Resource.create({SERVICE_NAME: service_name}).merge(OTELResourceDetector().detect())


def _tracer_provider(
    resource: Resource, exporters: frozenset[str], protocol: OtlpProtocol
) -> TracerProvider:
    current = trace.get_tracer_provider()
    # Someone (e.g. the opentelemetry-instrument launcher) already set an SDK provider: the
    # global one cannot be replaced, so add to it rather than build one nobody uses.
    if isinstance(current, TracerProvider):
        return current
    provider = _build_tracer_provider(resource, exporters, protocol)
    trace.set_tracer_provider(provider)
    return provider


def _build_tracer_provider(
    resource: Resource, exporters: frozenset[str], protocol: OtlpProtocol
) -> TracerProvider:
    provider = TracerProvider(resource=resource)
    span_exporters: list[SpanExporter] = []
    if "otlp" in exporters:
        span_exporters.append(GrpcSpanExporter() if protocol == "grpc" else HttpSpanExporter())
    if "console" in exporters:
        span_exporters.append(ConsoleSpanExporter())
    for exporter in span_exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _meter_provider(
    resource: Resource, exporters: frozenset[str], protocol: OtlpProtocol
) -> MeterProvider:
    current = metrics.get_meter_provider()
    if isinstance(current, MeterProvider):
        return current
    provider = _build_meter_provider(resource, exporters, protocol)
    metrics.set_meter_provider(provider)
    return provider


def _build_meter_provider(
    resource: Resource, exporters: frozenset[str], protocol: OtlpProtocol
) -> MeterProvider:
    metric_exporters: list[MetricExporter] = []
    if "otlp" in exporters:
        metric_exporters.append(
            GrpcMetricExporter() if protocol == "grpc" else HttpMetricExporter()
        )
    if "console" in exporters:
        metric_exporters.append(ConsoleMetricExporter())
    readers: Sequence[MetricReader] = [PeriodicExportingMetricReader(e) for e in metric_exporters]
    return MeterProvider(resource=resource, metric_readers=readers)


def flush(timeout_millis: int = 5000) -> bool:
    """Export the spans and metrics still buffered, if ``configure()`` ran.

    Services call it last on the way out of their lifespan: uvicorn re-raises SIGTERM after its
    graceful shutdown, so nothing after ``uvicorn.run`` gets a chance to.

    Args:
        timeout_millis: How long to wait for each provider.

    Returns:
        True when everything was exported in time, or there was nothing configured.
    """
    return _configured is None or _configured.force_flush(timeout_millis)


def _require() -> Telemetry:
    if _configured is None:
        raise RuntimeError("call codexpool_shared.telemetry.configure() first")
    return _configured


def instrument_app(app: FastAPI) -> None:
    """Trace every request ``app`` serves, except the probes and ``/metrics``.

    Header values are never recorded, even if ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``
    is set: every captured header is sanitized. Bodies are never recorded, and credential
    shapes in the URL's query are redacted.

    Args:
        app: The app, once; call ``configure()`` first.

    Raises:
        RuntimeError: ``configure()`` has not run.
    """
    telemetry = _require()
    instrument_fastapi(app, telemetry.tracer_provider, telemetry.meter_provider)


def add_span_processor(processor: SpanProcessor) -> None:
    """``Telemetry.add_span_processor`` of the configured telemetry.

    Args:
        processor: The processor.

    Raises:
        RuntimeError: ``configure()`` has not run.
    """
    _require().add_span_processor(processor)


@contextmanager
def capture_spans() -> Iterator[InMemorySpanExporter]:
    """Collect the spans that end inside the block, for tests.

    Works whether or not an exporter is configured, and however often ``configure()`` ran::

        telemetry.configure("codexpool-test")
        with telemetry.capture_spans() as spans:
            client.get("/v1/models")
        assert spans.get_finished_spans()

    Yields:
        The exporter holding the finished spans.

    Raises:
        RuntimeError: ``configure()`` has not run.
    """
    telemetry = _require()
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    telemetry.add_span_processor(processor)
    try:
        yield exporter
    finally:
        telemetry.remove_span_processor(processor)
