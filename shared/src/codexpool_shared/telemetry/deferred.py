"""Finished child spans of a hot request, made once its answer is over.

Making a span costs CPU (sampling, ids, attribute checks, processors): on the router, whose
requests wait on nothing but I/O, the spans made before the first byte cost more of its added
latency at one connection than the Redis call they describe. A call that only needs its span
to say what happened records it here when it is over (:func:`finished`); under a
``TracedRoute`` the span is made with its own start and end times when the request's answer is
over, before the SERVER span ends, and anywhere else at once. What is exported is the same span,
with the same parent, times and attributes.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from dataclasses import dataclass

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import Attributes


@dataclass(slots=True)
class _Finished:
    tracer: trace.Tracer
    name: str
    kind: SpanKind
    attributes: Attributes
    start_ns: int
    end_ns: int
    error: str | None
    parent: context.Context


class _Request:
    """The spans one request deferred.

    Once they are made, a late one (from a task the request started) is made at once.
    """

    __slots__ = ("open", "spans")

    def __init__(self) -> None:
        self.spans: list[_Finished] = []
        self.open = True


_request: ContextVar[_Request | None] = ContextVar("codexpool_deferred_spans", default=None)


def finished(
    tracer: trace.Tracer,
    name: str,
    kind: SpanKind,
    attributes: Attributes,
    start_ns: int,
    end_ns: int | None = None,
    error: str | None = None,
) -> None:
    """Record a finished span of ``tracer``, a child of the current span.

    It started at ``start_ns`` (``time.time_ns()``) and ended at ``end_ns`` (now if None);
    ``error`` is the description of its ERROR status. ``attributes`` is not copied before the
    span is made: the caller must not change it.
    """
    span = _Finished(
        tracer,
        name,
        kind,
        attributes,
        start_ns,
        time.time_ns() if end_ns is None else end_ns,
        error,
        context.get_current(),
    )
    request = _request.get()
    if request is not None and request.open:
        request.spans.append(span)
    else:
        _make(span)


def defer() -> Token[_Request | None]:
    """Defer the spans of the current request (its task's context) until :func:`make`."""
    return _request.set(_Request())


def make(token: Token[_Request | None]) -> None:
    """Make the spans deferred since ``defer`` returned ``token``."""
    request = _request.get()
    _request.reset(token)
    if request is None:
        return
    request.open = False
    # A task the request started keeps its context, and with it this object: not the records.
    spans, request.spans = request.spans, []
    for span in spans:
        _make(span)


def _make(finished: _Finished) -> None:
    span = finished.tracer.start_span(
        finished.name,
        context=finished.parent,
        kind=finished.kind,
        attributes=finished.attributes,
        start_time=finished.start_ns,
    )
    if finished.error is not None:
        span.set_status(StatusCode.ERROR, finished.error)
    span.end(end_time=finished.end_ns)
