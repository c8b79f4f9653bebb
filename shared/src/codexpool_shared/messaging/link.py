"""The publisher's side of one AMQP connection: opening it, and sending one event on it.

A ``Link`` is a plain connection with a confirming channel and the events exchange; the
publisher throws it away after any failure and opens a new one (publisher.py explains why).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

import aio_pika
from aio_pika.abc import AbstractConnection
from aiormq import Channel as RawChannel
from aiormq import spec
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from codexpool_shared.messaging import codec
from codexpool_shared.messaging.connection import close_quietly, connect
from codexpool_shared.messaging.propagation import start_producer_span
from codexpool_shared.messaging.topology import Topology, declare_topology

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


@dataclass(slots=True, frozen=True)
class Outgoing:
    """An event accepted by ``publish()``: encoded, with the trace context it was published in."""

    message_id: str
    routing_key: str
    body: bytes
    context: Context
    """The context ``publish()`` was called in: its span is the PRODUCER span's parent."""
    accepted_ns: int


@dataclass(slots=True, frozen=True)
class Link:
    """An open connection, its confirming channel and the exchange events go to."""

    connection: AbstractConnection
    channel: RawChannel
    exchange: str


async def open_link(
    url: str, *, name: str, topology: Topology, declare: bool, timeout_s: float
) -> Link:
    """Connect, open a confirming channel and declare the exchange, within ``timeout_s``.

    With ``declare``, the whole topology is declared too. Nothing is left open on failure.
    """
    connection = await connect(url, name=name, timeout_s=timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            if declare:
                await declare_topology(channel, topology.namespace)
            exchange = await channel.declare_exchange(
                topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            # aio-pika opens aiormq channels; only the concrete class takes ``wait``.
            raw = cast(RawChannel, await channel.get_underlay_channel())
    except BaseException:
        await close_quietly(connection, timeout_s=0.5)
        raise
    return Link(connection, raw, exchange.name)


async def send_event(link: Link, item: Outgoing) -> None:
    """Publish ``item`` (persistent, mandatory) and wait for its confirm.

    It runs in a PRODUCER span that starts when the event was accepted. Raises ``PublishError``
    when RabbitMQ returned it as unroutable.
    """
    span, headers = start_producer_span(
        item.context,
        exchange=link.exchange,
        routing_key=item.routing_key,
        message_id=item.message_id,
        start_time_ns=item.accepted_ns,
    )
    try:
        # aiormq directly, not ``Exchange.publish``: with ``wait=False`` the channel lock is
        # held only while frames are queued, not until the socket drains, so a batch is
        # written back to back and its confirms awaited together (about 3x the throughput).
        await link.channel.basic_publish(
            item.body,
            exchange=link.exchange,
            routing_key=item.routing_key,
            properties=spec.Basic.Properties(
                content_type=codec.CONTENT_TYPE,
                delivery_mode=PERSISTENT,
                message_id=item.message_id,
                message_type=item.routing_key,
                headers=dict(headers),
            ),
            mandatory=True,
            wait=False,
        )
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()
