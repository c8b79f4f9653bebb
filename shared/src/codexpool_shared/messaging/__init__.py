"""RabbitMQ messaging: topology, the never-blocking event publisher, the event consumer.

A service wires them in its lifespan::

    publisher = EventPublisher(str(settings.amqp_url), settings.namespace, registry=registry)
    await publisher.start()  # returns at once, even with RabbitMQ down
    stack.push_async_callback(publisher.close, 5.0)

    consumer = EventConsumer(
        str(settings.amqp_url), Topology(settings.namespace).health_queue, acking(handler),
        registry=registry, name="codexpool-health", declare=settings.namespace,
    )
    await consumer.start()  # returns at once too; declares the topology on every connect
    stack.push_async_callback(consumer.stop)

``acking(handler)`` awaits ``handler(event, info)`` per event, then acks, or requeues after a
pause if it raised. A handler that settles deliveries itself takes ``(event, delivery)`` and is
passed as it is: the health service's batcher acks a whole batch with one ``multiple=True`` frame
once it is in Redis. Unit tests use ``testing.messaging.InMemoryPublisher``, which with
``testing.broker.InMemoryBroker`` behind it routes, settles and dead-letters as RabbitMQ does
(the behaviour suite in ``tests/messaging_suite.py`` runs on both).
"""

from codexpool_shared.messaging.api import (
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
    SettlingHandler,
)
from codexpool_shared.messaging.codec import MalformedMessageError, decode, encode
from codexpool_shared.messaging.connection import close_quietly, connect, server_version
from codexpool_shared.messaging.consumer import EventConsumer, acking
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
    "SettlingHandler",
    "Topology",
    "acking",
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
