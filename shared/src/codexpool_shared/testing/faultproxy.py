"""An asyncio TCP fault proxy to put between a service and Redis, RabbitMQ or an upstream.

Toxiproxy cannot be installed on the build machines (docs/reference/reliability-security.md 2.6), so
this is the in-repo equivalent::

    async with FaultProxy("127.0.0.1", 5672) as proxy:
        url = proxy.url_for("amqp://guest:guest@127.0.0.1:5672/")
        ...  # connect the code under test to url
        proxy.blackhole()  # the broker "hangs": connections stay open, nothing moves
        proxy.pass_through()  # new connections work again

Modes apply at once to every connection, old and new:

- ``pass_through()``: forward both ways.
- ``latency(ms)``: forward each chunk ``ms`` milliseconds late.
- ``blackhole()``: keep connections open and forward nothing either way (no FIN, no RST); new
  connections are accepted and never reach the target. A connection that was blackholed stays
  dead for good, even after ``pass_through()``: bytes were swallowed, so its stream is corrupt.
  Clients must notice (timeouts, heartbeats) and reconnect, which is what the tests want to see.
- ``reset()``: close every connection with a TCP RST, and reset new ones on accept.
- ``close_after(n_bytes)``: a connection is reset once ``n_bytes`` (both directions together,
  counted from its start) have passed through it; bytes still in the kernel's send buffer at
  that moment may be lost, as with a real RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class _Mode:
    name: str
    latency_s: float = 0.0
    close_after: int | None = None


@dataclass(eq=False, slots=True)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    forwarded: int = 0
    blackholed: bool = False
    tasks: list[asyncio.Task[bool]] = field(default_factory=list)

    def reset(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _abort_with_rst(writer)


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 (a free port) in front of ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        """Build the proxy; it listens once entered (``async with``)."""
        self._target = (target_host, target_port)
        self._mode = _Mode("pass")
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        """The port the proxy listens on (0 until entered)."""
        self.accepted = 0
        """Connections accepted so far."""

    @property
    def mode(self) -> str:
        """The current mode: ``pass``, ``latency``, ``blackhole``, ``reset`` or ``close_after``."""
        return self._mode.name

    @property
    def open_connections(self) -> int:
        """Client connections currently open through the proxy."""
        return len(self._conns)

    def url_for(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (credentials and path kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def pass_through(self) -> None:
        """Forward traffic; blackholed connections stay dead, new ones go through."""
        self._mode = _Mode("pass")

    def latency(self, ms: float) -> None:
        """Delay every forwarded chunk by ``ms`` milliseconds."""
        self._mode = _Mode("latency", latency_s=ms / 1000)

    def blackhole(self) -> None:
        """Forward nothing, close nothing: the target seems to hang."""
        self._mode = _Mode("blackhole")
        for conn in self._conns:
            conn.blackholed = True

    def reset(self) -> None:
        """Reset (RST) every connection now and every new one on accept."""
        self._mode = _Mode("reset")
        for conn in list(self._conns):
            conn.reset()

    def close_after(self, n_bytes: int) -> None:
        """Reset each connection once ``n_bytes`` have passed through it."""
        self._mode = _Mode("close_after", close_after=n_bytes)

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.reset()
            for task in conn.tasks:
                task.cancel()
        tasks = [task for conn in self._conns for task in conn.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        conn = _Conn(writer)
        if self._mode.name == "reset":
            conn.reset()
            return
        self._conns.add(conn)
        try:
            if self._mode.name == "blackhole":
                conn.blackholed = True
                await self._swallow(reader)
                return
            try:
                up_reader, conn.upstream = await asyncio.open_connection(*self._target)
            except OSError:
                conn.reset()
                return
            conn.tasks = [
                asyncio.create_task(self._pump(reader, conn.upstream, conn)),
                asyncio.create_task(self._pump(up_reader, writer, conn)),
            ]
            done, _ = await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in conn.tasks:
                task.cancel()
            await asyncio.gather(*conn.tasks, return_exceptions=True)
            if any(not task.cancelled() and task.result() for task in done):
                conn.reset()
            else:  # one side closed normally: pass the FIN on
                conn.client.close()
                conn.upstream.close()
        finally:
            self._conns.discard(conn)
            for side in (conn.client, conn.upstream):
                if side is not None and not side.is_closing():
                    side.close()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(_CHUNK):
                pass

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, conn: _Conn
    ) -> bool:
        """Forward until EOF (False) or until ``close_after`` cuts the connection (True)."""
        with contextlib.suppress(OSError):
            while chunk := await source.read(_CHUNK):
                if conn.blackholed:
                    continue
                mode = self._mode
                if mode.latency_s:
                    await asyncio.sleep(mode.latency_s)
                if mode.close_after is not None:
                    room = max(0, mode.close_after - conn.forwarded)
                    if room < len(chunk):
                        sink.write(chunk[:room])
                        conn.forwarded += room
                        with contextlib.suppress(OSError):
                            await sink.drain()
                        return True
                if conn.blackholed:  # blackholed while this chunk waited out its latency
                    continue
                sink.write(chunk)
                conn.forwarded += len(chunk)
                await sink.drain()
        return False
