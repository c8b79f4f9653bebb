"""A small real SOCKS5 server (RFC 1928 CONNECT, RFC 1929 username/password) for tests.

::

    async with Socks5Server("pool", "secret") as proxy:
        url = f"socks5://pool:secret@127.0.0.1:{proxy.port}"
        ...  # give url to the code under test
        proxy.requests  # the HTTP/1.1 requests it carried: (method, target, host, account id)

It insists on its credentials when it has some (a client that offers no username/password, or
the wrong one, is refused as RFC 1929 says), so a test through it proves the credentials were
used. Besides relaying bytes it reads the client's side of each tunnel as HTTP/1.1 (request head,
then a ``Content-Length`` body) to record each request it carried, which lets a test check that
every request of a provider went through it; a tunnel it cannot read that way (TLS, chunked
bodies) is recorded in ``unreadable``. Leaving the ``async with`` closes the listener and every
tunnel, as a proxy that stops would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass, field

_VERSION = 5
_NO_AUTH, _USER_PASS, _NO_METHOD = 0, 2, 0xFF
_CONNECT = 1
_IPV4, _DOMAIN, _IPV6 = 1, 3, 4
_SUCCEEDED, _GENERAL_FAILURE, _REFUSED, _NOT_SUPPORTED, _ATYP_NOT_SUPPORTED = 0, 1, 5, 7, 8
_CHUNK = 65536
_MAX_HEAD = 65536


@dataclass(frozen=True, slots=True)
class Carried:
    """One HTTP/1.1 request that went through a tunnel."""

    method: str
    target: str
    """The request target as sent (origin form: ``/backend-api/codex/responses``)."""
    host: str
    """The tunnel's destination, ``host:port`` as the client asked for it."""
    account_id: str
    """Its ``chatgpt-account-id`` header ('' when it has none)."""


@dataclass(slots=True)
class _HttpTap:
    """Reads the client's side of a tunnel as a sequence of HTTP/1.1 requests."""

    destination: str
    sink: list[Carried]
    buffer: bytearray = field(default_factory=bytearray)
    body_left: int = 0
    broken: bool = False

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        self.buffer += data
        while True:
            if self.body_left:
                taken = min(self.body_left, len(self.buffer))
                del self.buffer[:taken]
                self.body_left -= taken
                if self.body_left:
                    return
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                self.broken = len(self.buffer) > _MAX_HEAD
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            del self.buffer[: end + 4]
            parts = head[0].split(" ")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in head[1:])
            }
            if len(parts) != 3 or "chunked" in headers.get("transfer-encoding", ""):
                self.broken = True
                return
            self.sink.append(
                Carried(parts[0], parts[1], self.destination, headers.get("chatgpt-account-id", ""))
            )
            self.body_left = int(headers.get("content-length", "0"))


class Socks5Server:
    """A SOCKS5 server on 127.0.0.1 (a free port, or ``port``) that tunnels CONNECT requests."""

    def __init__(self, username: str | None = None, password: str | None = None, port: int = 0):
        self._credentials = (
            None if username is None else (username.encode(), (password or "").encode())
        )
        self._server: asyncio.Server | None = None
        self._tunnels: set[asyncio.Task[None]] = set()
        self.port = port
        """The port it listens on (known once entered)."""
        self.requests: list[Carried] = []
        """Every HTTP/1.1 request it carried, in order."""
        self.connects: list[str] = []
        """The destination (``host:port``) of every CONNECT it granted."""
        self.refused_auth = 0
        """Clients refused for offering no credentials or the wrong ones."""
        self.unreadable = 0
        """Tunnels whose client side was not plain HTTP/1.1 with Content-Length bodies."""

    async def __aenter__(self) -> Socks5Server:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tunnels):
            task.cancel()
        await asyncio.gather(*self._tunnels, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tunnels.add(task)
        try:
            upstream = await self._handshake(reader, writer)
            if upstream is not None:
                await self._relay(reader, writer, *upstream)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tunnels.discard(task)
            writer.close()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str] | None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        wanted = _NO_AUTH if self._credentials is None else _USER_PASS
        if version != _VERSION or wanted not in methods:
            self.refused_auth += int(version == _VERSION)
            writer.write(bytes([_VERSION, _NO_METHOD]))
            await writer.drain()
            return None
        writer.write(bytes([_VERSION, wanted]))
        if self._credentials is not None and not await self._authenticate(reader, writer):
            self.refused_auth += 1
            return None
        version, command, _, kind = await reader.readexactly(4)
        if kind == _IPV4:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == _IPV6:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif kind == _DOMAIN:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode("idna")
        else:
            await self._reply(writer, _ATYP_NOT_SUPPORTED)
            return None
        port = int.from_bytes(await reader.readexactly(2), "big")
        if version != _VERSION or command != _CONNECT:
            await self._reply(writer, _NOT_SUPPORTED)
            return None
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            await self._reply(writer, _REFUSED)
            return None
        except OSError:
            await self._reply(writer, _GENERAL_FAILURE)
            return None
        bound_host, bound_port = up_writer.get_extra_info("sockname")[:2]
        await self._reply(writer, _SUCCEEDED, bound_host, bound_port)
        destination = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.connects.append(destination)
        return up_reader, up_writer, destination

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        assert self._credentials is not None
        version, length = await reader.readexactly(2)
        username = await reader.readexactly(length)
        password = await reader.readexactly((await reader.readexactly(1))[0])
        ok = version == 1 and (username, password) == self._credentials
        writer.write(bytes([1, 0 if ok else 1]))
        await writer.drain()
        return ok

    @staticmethod
    async def _reply(
        writer: asyncio.StreamWriter, code: int, host: str = "0.0.0.0", port: int = 0
    ) -> None:
        address = ipaddress.ip_address(host)
        kind = _IPV4 if address.version == 4 else _IPV6
        writer.write(bytes([_VERSION, code, 0, kind]) + address.packed + port.to_bytes(2, "big"))
        await writer.drain()

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        destination: str,
    ) -> None:
        tap = _HttpTap(destination, self.requests)
        try:
            await asyncio.gather(_pipe(reader, up_writer, tap), _pipe(up_reader, writer, None))
        finally:
            self.unreadable += int(tap.broken)
            up_writer.close()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tap: _HttpTap | None
) -> None:
    try:
        while data := await reader.read(_CHUNK):
            if tap is not None:
                tap.feed(data)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        # The other side's half-close: a client that sends no more still reads the answer.
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
