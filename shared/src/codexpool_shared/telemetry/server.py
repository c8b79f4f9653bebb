"""A lean SERVER span for hot routes that are served by a plain ASGI handler.

The contrib ASGI middleware, and the framework middleware around it, wrap every ``send``, build
header and URL attributes through several helpers and record four metrics per request: about
a quarter of the router's CPU on a streamed response. ``TracedRoute`` makes the same span (HTTP
semantic conventions, the W3C parent taken from the request headers) for a fraction of that.
Header values other than the user agent are never recorded, nor is the query string.
"""

from __future__ import annotations

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codexpool_shared.telemetry import deferred

_tracer = trace.get_tracer("codexpool_shared.telemetry.server")


class _Fields:
    """The header names the global propagator reads, as ASGI spells them (lower-case bytes).

    Only those headers are decoded for ``propagate.extract``: decoding every header of every
    request into a dict cost more than the extraction itself.
    """

    textmap: TextMapPropagator | None = None
    names: frozenset[bytes] = frozenset()

    @classmethod
    def current(cls) -> frozenset[bytes]:
        textmap = propagate.get_global_textmap()
        if textmap is not cls.textmap:
            cls.textmap = textmap
            cls.names = frozenset(name.lower().encode("latin-1") for name in textmap.fields)
        return cls.names


def _attributes(scope: Scope, route: str, user_agent: bytes | None) -> dict[str, str | int]:
    out: dict[str, str | int] = {
        "http.request.method": scope["method"],
        "http.route": route,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if server := scope.get("server"):
        out["server.address"], out["server.port"] = server[0], server[1]
    if client := scope.get("client"):
        out["client.address"] = client[0]
    if user_agent is not None:
        out["user_agent.original"] = user_agent.decode("latin-1")
    return out


def _set_status(span: Span, status: int) -> None:
    """Record an answer's status; a 5xx marks the span as failed, as the conventions ask."""
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


class TracedRoute:
    """Runs ``handler`` for one route inside a SERVER span named ``"{method} {route}"``.

    The span is current while the handler runs, so client, Redis and publish spans are its
    children; the spans the handler defers (``deferred.finished``) are made when it returns. An
    exception escapes unchanged, recorded on the span.

    The span starts bare and gets its attributes when the answer is over: setting them costs
    more than starting it, and the first byte should not wait for that. The built-in samplers
    (``OTEL_TRACES_SAMPLER``) decide without reading attributes.
    """

    def __init__(self, handler: ASGIApp, route: str) -> None:
        self._handler = handler
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request."""
        fields = _Fields.current()
        carrier: dict[str, str] = {}
        user_agent = None
        for key, value in scope["headers"]:
            if key in fields:
                carrier[key.decode("latin-1")] = value.decode("latin-1")
            elif key == b"user-agent":
                user_agent = value
        span = _tracer.start_span(
            f"{scope['method']} {self._route}",
            # Without any propagation header, extracting gives an empty context: skip it.
            context=propagate.extract(carrier) if carrier else Context(),
            kind=SpanKind.SERVER,
        )
        status = 0

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        spans = deferred.defer()
        # Ends the span after recording what escapes the handler, which outranks the status.
        with trace.use_span(span, end_on_exit=True):
            try:
                await self._handler(scope, receive, traced_send)
            finally:
                deferred.make(spans)
                if span.is_recording():
                    span.set_attributes(_attributes(scope, self._route, user_agent))
                    if status:
                        _set_status(span, status)
