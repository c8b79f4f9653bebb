"""RabbitMQ messaging: topology, the never-blocking event publisher, the consumer helper.

A service wires them in its lifespan::

    publisher = EventPublisher(str(settings.amqp_url), settings.namespace, registry=registry)
    await publisher.start()  # returns at once, even with RabbitMQ down
    stack.push_async_callback(publisher.close, 5.0)

    consumer = EventConsumer(
        str(settings.amqp_url), Topology(settings.namespace).health_queue, handler,
        registry=registry, name="codexpool-health",
        setup=lambda channel: declare_topology(channel, settings.namespace),
    )
    await consumer.start()  # connects (fails if RabbitMQ is down), declares, consumes
    stack.push_async_callback(consumer.stop)

``handler(event, info)`` is awaited per event; pass ``batch_handler=`` instead to receive up to
``batch_size`` deliveries at once. Unit tests use ``testing.messaging.InMemoryPublisher``.
"""

from codexpool_shared.messaging.api import (
    BatchHandler,
    ConsumerState,
    ConsumerStateError,
    ConsumerStats,
    Delivery,
    Handler,
    MessageInfo,
    Publisher,
    PublisherState,
    PublisherStateError,
    PublisherStats,
)
from codexpool_shared.messaging.codec import MalformedMessageError, decode, encode
from codexpool_shared.messaging.connection import close_quietly, connect, server_version
from codexpool_shared.messaging.consumer import EventConsumer
from codexpool_shared.messaging.metrics import (
    CONSUME_RESULTS,
    DROP_REASONS,
    ConsumeResult,
    DropReason,
)
from codexpool_shared.messaging.propagation import capture_context
from codexpool_shared.messaging.publisher import EventPublisher
from codexpool_shared.messaging.topology import (
    DELIVERY_LIMIT,
    OUTCOME_ROUTING_KEY,
    Topology,
    declare_queue,
    declare_topology,
    delete_topology,
)

__all__ = [
    "CONSUME_RESULTS",
    "DELIVERY_LIMIT",
    "DROP_REASONS",
    "OUTCOME_ROUTING_KEY",
    "BatchHandler",
    "ConsumeResult",
    "ConsumerState",
    "ConsumerStateError",
    "ConsumerStats",
    "Delivery",
    "DropReason",
    "EventConsumer",
    "EventPublisher",
    "Handler",
    "MalformedMessageError",
    "MessageInfo",
    "Publisher",
    "PublisherState",
    "PublisherStateError",
    "PublisherStats",
    "Topology",
    "capture_context",
    "close_quietly",
    "connect",
    "declare_queue",
    "declare_topology",
    "decode",
    "delete_topology",
    "encode",
    "server_version",
]
