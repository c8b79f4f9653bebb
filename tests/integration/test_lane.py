"""A lane's calls against a real Redis: order, errors, a paused or restarted server, its span."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from codexpool_shared.store import lane as lane_module
from codexpool_shared.store.lane import Lane
from codexpool_shared.testing.redis_server import PrivateRedis, private_redis

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

STALE_S = 0.3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    with private_redis(tmp_path / "redis") as running:
        yield running


@pytest.fixture
async def client(server: PrivateRedis) -> AsyncIterator[Redis]:
    pool = BlockingConnectionPool.from_url(
        server.url, max_connections=4, timeout=1, socket_timeout=1, socket_connect_timeout=1
    )
    redis = Redis.from_pool(pool)
    yield redis
    await redis.aclose()


@pytest.fixture
async def echo(client: Redis) -> AsyncIterator[Lane]:
    """A lane of ECHO calls: each reply names its call."""
    lane = Lane(client, "ECHO", STALE_S)
    yield lane
    await lane.aclose()


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The commands of each write redis-py connections make (they all write with
    ``StreamWriter.writelines``), observed without changing them."""
    writes: list[int] = []
    writelines = asyncio.StreamWriter.writelines

    def counting(self: asyncio.StreamWriter, data: Any) -> None:
        packed = list(data)
        writes.append(b"".join(packed).count(b"\r\n*") + 1)
        writelines(self, packed)

    monkeypatch.setattr(asyncio.StreamWriter, "writelines", counting)
    return writes


async def test_concurrent_calls_get_their_own_replies_in_one_write(
    client: Redis, echo: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await echo.call("connect") == b"connect"
    writes = count_writes(monkeypatch)
    replies = await asyncio.gather(*(echo.call(f"call-{i}") for i in range(200)))
    assert replies == [f"call-{i}".encode() for i in range(200)]
    assert writes == [200]
    await echo.aclose()
    # The connection went back to the pool with its timeout.
    connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    assert connection.socket_timeout == 1
    await client.connection_pool.release(connection)


async def test_a_call_alone_on_a_closing_connection_fails_at_once(echo: Lane) -> None:
    assert await echo.call("connect") == b"connect"
    connection = echo._connection
    assert connection is not None and connection._writer is not None
    # Closed on this side, before the lane's reader has seen it: a write would be dropped.
    connection._writer.transport.close()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(echo.call("lost", alone=True), STALE_S / 3)
    assert await echo.call("again", alone=True) == b"again"  # on a new connection


async def test_a_call_alone_is_written_before_it_waits_unless_a_reply_is_awaited(
    echo: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await echo.call("connect") == b"connect"
    writes = count_writes(monkeypatch)
    first = asyncio.create_task(echo.call("first", alone=True))
    await asyncio.sleep(0)  # the call's first step ran, and nothing after it
    assert writes == [1], "written in the call itself, not at the end of the loop's turn"
    # A reply is awaited: the next call waits for the end of the turn, with the others.
    second = asyncio.create_task(echo.call("second", alone=True))
    third = asyncio.create_task(echo.call("third"))
    await asyncio.sleep(0)
    assert writes == [1]
    assert list(await asyncio.gather(first, second, third)) == [b"first", b"second", b"third"]
    assert writes == [1, 2]


async def test_an_error_reply_fails_only_its_own_call(client: Redis) -> None:
    lane = Lane(client, "EVALSHA", STALE_S)
    sha = await client.script_load("return ARGV[1]")
    good = [lane.call(sha, 0, str(i)) for i in range(3)]
    bad = lane.call("0" * 40, 0, "x")
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert results[:3] == [b"0", b"1", b"2"]
    assert isinstance(results[3], NoScriptError)
    assert await lane.call(sha, 0, "after") == b"after"
    await lane.aclose()


async def test_an_argument_redis_py_cannot_encode_fails_its_batch_and_sends_nothing(
    client: Redis, echo: Lane
) -> None:
    assert await echo.call("before") == b"before"
    connections = (await client.info("stats"))["total_connections_received"]
    with pytest.raises(DataError):
        await echo.call({"not": "encodable"})  # type: ignore[arg-type]
    assert await echo.call("after") == b"after"
    # On the same connection: the lane did not drop it.
    assert (await client.info("stats"))["total_connections_received"] == connections


async def test_a_paused_server_drops_the_connection_and_its_calls(
    server: PrivateRedis, echo: Lane
) -> None:
    assert await echo.call("up") == b"up"
    server.pause()
    try:
        waiting = asyncio.ensure_future(echo.call("while paused"))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):  # the caller's own bound
                await echo.call("bounded")
        await asyncio.sleep(STALE_S)
        # The next call finds no reply for longer than stale_s: the connection is dropped, and
        # the call still waiting fails instead of waiting on it.
        started = time.monotonic()
        next_call = asyncio.ensure_future(echo.call("next"))
        with pytest.raises(RedisTimeoutError):
            await waiting
        assert time.monotonic() - started < STALE_S
        # While the next call connects (the paused server cannot finish the handshake), more
        # calls queue behind it; each still gets its own reply once the server answers.
        await asyncio.sleep(0.05)
        later = [asyncio.ensure_future(echo.call(f"later-{i}")) for i in range(5)]
        await asyncio.sleep(STALE_S + 0.05)
        last = asyncio.ensure_future(echo.call("last"))
        await asyncio.sleep(0.05)
    finally:
        server.resume()
    assert await next_call == b"next"
    assert await asyncio.gather(*later) == [f"later-{i}".encode() for i in range(5)]
    assert await last == b"last"
    assert await echo.call("resumed") == b"resumed"


async def test_a_restarted_server_fails_the_calls_then_serves_the_next(
    server: PrivateRedis, echo: Lane
) -> None:
    assert await echo.call("before") == b"before"
    server.stop()
    with pytest.raises(RedisConnectionError):
        async with asyncio.timeout(5):
            await echo.call("down")
    server.start()
    assert await echo.call("after") == b"after"


async def test_each_call_has_a_client_span_under_the_current_one(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(lane_module, "_tracer", provider.get_tracer("test"))
    lane = Lane(client, "EVALSHA", STALE_S)
    sha = await client.script_load("return ARGV[1]")
    with provider.get_tracer("test").start_as_current_span("request") as parent:
        await lane.call(sha, 0, "secret-value")
        with pytest.raises(NoScriptError):
            await lane.call("0" * 40, 0, "x")
    await lane.aclose()
    ok, failed = [s for s in exporter.get_finished_spans() if s.name == "EVALSHA"]
    assert ok.kind == SpanKind.CLIENT
    assert ok.parent is not None and ok.parent.span_id == parent.get_span_context().span_id
    port = client.connection_pool.connection_kwargs["port"]
    assert dict(ok.attributes or {}) == {
        "db.system": "redis",
        "db.redis.database_index": 0,
        "net.peer.name": "127.0.0.1",
        "net.peer.port": port,
        "net.transport": "ip_tcp",
        "db.statement": "EVALSHA ? ? ?",
        "db.redis.args_length": 4,
    }
    assert ok.status.status_code == StatusCode.UNSET
    assert failed.status.status_code == StatusCode.ERROR
