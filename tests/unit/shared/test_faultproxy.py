from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from codexpool_shared.testing.faultproxy import FaultProxy

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def proxy(echo_port: int) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", echo_port) as proxy:
        yield proxy


async def _open(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _roundtrip(proxy: FaultProxy, payload: bytes = b"ping") -> bytes:
    reader, writer = await _open(proxy)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 2)
    finally:
        writer.close()


async def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    assert proxy.mode == "pass"
    assert await _roundtrip(proxy, b"x" * 200_000) == b"x" * 200_000


async def test_url_for_keeps_credentials_and_path(proxy: FaultProxy) -> None:
    url = proxy.url_for("amqp://guest:secret@rabbit.example:5672/vhost?heartbeat=5")
    assert url == f"amqp://guest:secret@127.0.0.1:{proxy.port}/vhost?heartbeat=5"
    assert proxy.url_for("redis://10.0.0.1:6379/0") == f"redis://127.0.0.1:{proxy.port}/0"


async def test_latency_delays_each_chunk(proxy: FaultProxy) -> None:
    proxy.latency(150)
    started = time.monotonic()
    assert await _roundtrip(proxy) == b"ping"
    assert time.monotonic() - started >= 0.3  # once each way


async def test_blackhole_keeps_connections_open_and_forwards_nothing(proxy: FaultProxy) -> None:
    old_reader, old_writer = await _open(proxy)
    old_writer.write(b"before")
    await old_writer.drain()
    assert await asyncio.wait_for(old_reader.readexactly(6), 2) == b"before"

    proxy.blackhole()
    old_writer.write(b"lost")
    await old_writer.drain()
    new_reader, new_writer = await _open(proxy)  # accepted, never forwarded
    new_writer.write(b"lost too")
    await new_writer.drain()
    for reader in (old_reader, new_reader):
        with pytest.raises(TimeoutError):
            # Neither data nor EOF nor RST: the peer just seems to hang.
            await asyncio.wait_for(reader.read(1), 0.3)
    assert proxy.open_connections == 2

    proxy.pass_through()
    assert await _roundtrip(proxy) == b"ping"  # new connections work again
    old_writer.write(b"still lost")
    await old_writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(old_reader.read(1), 0.3)  # a blackholed connection stays dead
    old_writer.close()
    new_writer.close()


async def test_reset_kills_existing_and_new_connections(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    writer.write(b"hi")
    assert await asyncio.wait_for(reader.readexactly(2), 2) == b"hi"

    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 2)
    writer.close()
    reader, writer = await _open(proxy)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 2)
    writer.close()

    proxy.pass_through()
    assert await _roundtrip(proxy) == b"ping"


async def test_close_after_cuts_the_connection(proxy: FaultProxy) -> None:
    proxy.close_after(10)  # both directions: 4 bytes out + 4 echoed + 2 more
    reader, writer = await _open(proxy)
    writer.write(b"abcd")
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"abcd"
    writer.write(b"efghijkl")
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(8), 2)
    writer.close()


async def test_exit_closes_everything(echo_port: int) -> None:
    async with FaultProxy("127.0.0.1", echo_port) as proxy:
        reader, writer = await _open(proxy)
        proxy.blackhole()
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 2)
    writer.close()
