"""How a served process treats an idle keep-alive connection, seen from a raw socket."""

from __future__ import annotations

import re
import socket
import time

PROBE = b"GET /livez HTTP/1.1\r\nhost: test\r\n\r\n"
"""Every service answers its liveness probe without touching Redis or RabbitMQ."""


def connect(port: int) -> socket.socket:
    """A connection to the local service on ``port``; no read waits more than 10 s."""
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def answered(connection: socket.socket) -> bool:
    """Send the probe on ``connection`` and read its whole answer; whether it was a 200."""
    connection.sendall(PROBE)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = connection.recv(65536)
        if not chunk:
            return False
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
    assert length is not None, head
    while len(body) < int(length.group(1)):
        chunk = connection.recv(65536)
        assert chunk, "the connection closed mid-answer"
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def idle_until_closed(port: int, deadline_s: float) -> float:
    """Seconds a connection to the service on ``port`` stayed open, idle, after one answer.

    Raises:
        TimeoutError: Still open after ``deadline_s``.
    """
    with connect(port) as connection:
        assert answered(connection)
        idle = time.monotonic()
        connection.settimeout(deadline_s)
        assert connection.recv(65536) == b"", "bytes nobody asked for"
        return time.monotonic() - idle
