"""An in-memory stand-in for ``EventPublisher`` (the ``Publisher`` protocol) for unit tests.

It keeps ``EventPublisher``'s lifecycle rules (publish before ``start()`` or after ``close()``
raises) and its trace capture, records what was published, and can hand the events to a
consumer handler through the real codec, so a unit test exercises the same decoding path as
``EventConsumer`` without a broker::

    publisher = InMemoryPublisher()
    await publisher.start()
    app = create_app(settings, publisher=publisher)
    ...
    assert [e.type for e in publisher.events] == ["request.outcome.v1"]
    await publisher.deliver(handler)  # the handler a service wraps in acking()

Given an ``InMemoryBroker`` (``testing.broker``), it also routes every event through it, so an
``EventConsumer`` consuming from the same broker receives it (unroutable events are then
counted as dropped, as ``EventPublisher`` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass

from codexpool_shared.events import (
    Attempt,
    BaseEvent,
    EncodedEvent,
    Event,
    RequestOutcomeV1,
    event_type,
)
from codexpool_shared.messaging import codec
from codexpool_shared.messaging.api import (
    Handler,
    MessageInfo,
    PublisherState,
    PublisherStateError,
    PublisherStats,
)
from codexpool_shared.messaging.propagation import Carrier, capture_context
from codexpool_shared.messaging.topology import Topology
from codexpool_shared.testing.broker import InMemoryBroker


@dataclass(frozen=True, slots=True)
class Published:
    """One recorded ``publish()``: the event and the trace context captured with it."""

    event: BaseEvent
    carrier: Carrier


class InMemoryPublisher:
    """Records published events instead of sending them."""

    def __init__(self, namespace: str = "codexpool", *, broker: InMemoryBroker | None = None):
        """Build a publisher for ``namespace``, or for ``broker``'s namespace and routing to it.

        Without a broker, the namespace only names the exchange in ``deliver``.
        """
        self._broker = broker
        self._exchange = (broker.topology if broker is not None else Topology(namespace)).exchange
        self._state = PublisherState.NEW
        self.published: list[Published] = []
        """Everything ``publish()`` accepted, in order."""
        self.stats = PublisherStats()
        """Same counters as ``EventPublisher.stats``: all is published, unless the broker did not
        route it (``dropped["unroutable"]``)."""

    @property
    def state(self) -> PublisherState:
        """Where the publisher is in its lifecycle."""
        return self._state

    @property
    def events(self) -> list[BaseEvent]:
        """The published events, in order."""
        return [p.event for p in self.published]

    async def start(self) -> None:
        """Allow ``publish()``."""
        if self._state is not PublisherState.NEW:
            raise PublisherStateError(f"start() on a {self._state.value} publisher")
        self._state = PublisherState.RUNNING

    def publish(self, event: BaseEvent | EncodedEvent) -> None:
        """Record ``event`` (an encoded one as its model) and the caller's trace context.

        Raises:
            PublisherStateError: Before ``start()`` or after ``close()``.
        """
        if self._state is not PublisherState.RUNNING:
            raise PublisherStateError(
                "start() the publisher first"
                if self._state is PublisherState.NEW
                else "the publisher is closed: publish() after close() is a bug"
            )
        if isinstance(event, EncodedEvent):
            event = codec.decode(event.body)
        carrier = capture_context()
        self.published.append(Published(event, carrier))
        if self._broker is None or self._broker.publish(event, carrier):
            self.stats.published += 1
        else:
            self.stats.dropped["unroutable"] += 1

    async def close(self, deadline_s: float = 5.0) -> None:
        """Refuse further ``publish()`` calls."""
        self._state = PublisherState.CLOSED

    async def deliver(self, handler: Handler) -> list[Event]:
        """Hand every recorded event, encoded and decoded again, to a consumer ``handler``.

        Returns:
            The decoded events, in order (what a consumer would have seen).
        """
        seen: list[Event] = []
        for published in self.published:
            event = codec.decode(codec.encode(published.event))
            routing_key = event_type(type(published.event))
            info = MessageInfo(
                message_id=str(published.event.event_id),
                exchange=self._exchange,
                routing_key=routing_key,
                redelivered=False,
                delivery_count=0,
            )
            await handler(event, info)
            seen.append(event)
        return seen


def sample_outcome(**fields: object) -> RequestOutcomeV1:
    """A valid ``request.outcome.v1`` (one successful attempt) with ``fields`` overridden."""
    values: dict[str, object] = {
        "request_id": "req_sample",
        "agent_id": "agent-sample",
        "strategy": "round-robin",
        "model": "gpt-5-codex",
        "stream": False,
        "attempts": [
            Attempt(
                provider="provider-a",
                outcome="success",
                status_code=200,
                ttfb_ms=12.5,
                duration_ms=40.0,
                fallback=False,
            )
        ],
        "final_provider": "provider-a",
        "final_outcome": "success",
        "client_latency_ms": 42.0,
    }
    values.update(fields)
    return RequestOutcomeV1.model_validate(values)
