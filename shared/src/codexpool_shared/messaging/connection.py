"""Opening named AMQP connections, and closing them without ever hanging."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, FieldValue

log = logging.getLogger(__name__)

FRAME_BUFFER_SIZE = 4096
"""Outgoing frames an AMQP connection queues before a publish has to wait (aiormq's is 10).

A publish that finds aiormq's frame queue full waits for it *holding the channel lock*, and
every publish behind it then gets the lock one event-loop iteration at a time. On a busy
router (an iteration takes milliseconds) that capped publishing at tens of events per second:
2,000 events took 64 s under load with the default and 1.3 s with this. The publisher bounds
what it has in flight itself (its batch size), so this queue need not.
"""

# A class attribute is aiormq's only knob for it: the connection reads it when built.
aiormq.Connection.FRAME_BUFFER_SIZE = FRAME_BUFFER_SIZE

CONNECT_TIMEOUT_S = 5.0
"""TCP connect plus AMQP handshake; a blackholed broker costs this, not a hang."""

CLOSE_TIMEOUT_S = 2.0
"""How long a close waits for the broker's Close-Ok before giving up on it."""


async def connect(
    amqp_url: str,
    *,
    name: str,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> AbstractConnection:
    """Open a connection that RabbitMQ's management UI lists under ``name``.

    Args:
        amqp_url: ``amqp://user:password@host:port/vhost``; query parameters such as
            ``heartbeat=10`` are passed on to aiormq.
        name: The ``connection_name`` client property: which service or test holds it.
        timeout_s: Bound on the TCP connect plus the AMQP handshake.

    Returns:
        The open connection; close it with ``close_quietly``.
    """
    properties: dict[str, FieldValue] = {"connection_name": name}
    # A plain connection: the publisher and the consumer each reconnect on their own terms
    # (bounded waits, backoff) rather than through aio-pika's robust connection.
    return await asyncio.wait_for(
        aio_pika.connect(amqp_url, timeout=timeout_s, client_properties=properties), timeout_s
    )


async def close_quietly(
    connection: AbstractConnection, *, timeout_s: float = CLOSE_TIMEOUT_S
) -> None:
    """Close ``connection`` within ``timeout_s``, whatever state the broker or network is in.

    A broker that stopped answering never sends Close-Ok, so an unbounded close would hang for
    the heartbeat grace period; errors from an already broken connection are uninteresting.
    """
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.close(), timeout_s)


def server_version(connection: AbstractConnection) -> str:
    """The RabbitMQ version the broker announced in its ``Connection.Start`` properties.

    Args:
        connection: An open connection.

    Returns:
        For example ``"3.10.8"``.
    """
    transport = connection.transport
    if transport is None:
        raise RuntimeError("the connection is closed: open it before asking for its version")
    version = transport.connection.server_properties.get("version", b"")
    return version.decode() if isinstance(version, bytes) else str(version)
