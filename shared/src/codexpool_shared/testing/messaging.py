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

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from codexpool_shared.events import (
    Attempt,
    BaseEvent,
    Considered,
    Decision,
    EncodedEvent,
    Event,
    OutcomeClass,
    RequestOutcomeV1,
    TokenUsage,
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


def random_outcome(
    rng: random.Random,
    providers: list[str],
    agents: list[str],
    *,
    usage: bool = False,
    decision: bool = False,
) -> RequestOutcomeV1:
    """An outcome shaped like the router's, for the health benchmarks.

    A request id of its own (the router's are: the health service's explanation key is its
    dedupe), up to three attempts (a 15 % server error fails over), latencies spread over the
    histogram; with ``usage`` its tokens, with ``decision`` a routing decision naming every
    provider.
    """
    attempts = []
    for position in range(3):
        outcome: OutcomeClass = (
            "success" if rng.random() < 0.85 or position == 2 else "server_error"
        )
        attempts.append(
            Attempt(
                provider=rng.choice(providers),
                outcome=outcome,
                ttfb_ms=rng.uniform(50, 3000) if outcome == "success" else None,
                duration_ms=rng.uniform(100, 20000),
                fallback=position > 0,
            )
        )
        if outcome == "success":
            break
    routing = Decision(
        candidates=tuple(
            Considered(provider=p, eligible=True, reason="strategy_order", rank=i)
            for i, p in enumerate(providers)
        ),
        pool_size=len(providers),
    )
    return RequestOutcomeV1(
        occurred_at=datetime.now(UTC),
        request_id=f"req_{rng.getrandbits(96):024x}",
        agent_id=rng.choice(agents),
        strategy="round-robin",
        stream=True,
        attempts=tuple(attempts),
        final_provider=attempts[-1].provider,
        final_outcome=attempts[-1].outcome,
        client_latency_ms=1.0,
        usage=TokenUsage(input_tokens=100, output_tokens=50, total_tokens=150) if usage else None,
        decision=routing if decision else None,
    )
