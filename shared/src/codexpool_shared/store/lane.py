"""Pipelined calls on a connection of their own, for the one script the router runs per request.

Through redis-py's client a call takes a connection from the pool and gives it back, and
OpenTelemetry's instrumentation of that client builds its span's attributes again for every call:
about 100 us of a 190 us selection at one connection on a 2-core VM, where the round trip itself
is 80 (``bench/redis_lane.py``). A :class:`Lane` holds one pooled connection for good, reads the
replies in order in one reader task, and records each call's CLIENT span, from attributes
computed once, for when the request is over (``telemetry.deferred``).

The calls of one turn of the event loop are written together at its end, in one write. A call
whose caller knows no other can join it (``alone``: its process serves nothing else) is written
at once instead, inside the call, if no reply is awaited: handing it to the end of the turn cost
two turns of the loop, about 80 us of a request's added latency at one connection. Writing every
call at once when the lane is idle cost 5-8 % of the router's throughput at 32 connections.

Redis answers a connection's commands in the order they were written, so every call still runs
alone and in arrival order. A reply that does not come within ``stale_s`` (Redis paused, a
silently dead peer) drops the connection: every call still waiting fails with a
``TimeoutError`` and the next call connects again. The caller bounds its own wait
(``asyncio.timeout``); the lane only makes sure it never keeps waiting on a dead connection.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from codexpool_shared.telemetry import deferred

_tracer = trace.get_tracer(__name__)

_Call = tuple[tuple[EncodableT, ...], "asyncio.Future[Any]"]


def span_attributes(connection_kwargs: dict[str, Any]) -> dict[str, str | int]:
    """A Redis call's span attributes, as OpenTelemetry's redis instrumentation sets them."""
    attributes: dict[str, str | int] = {
        "db.system": "redis",
        "db.redis.database_index": int(connection_kwargs.get("db") or 0),
    }
    if "path" in connection_kwargs:
        attributes["net.peer.name"] = str(connection_kwargs["path"])
        attributes["net.transport"] = "other"
    else:
        attributes["net.peer.name"] = str(connection_kwargs.get("host", "localhost"))
        attributes["net.peer.port"] = int(connection_kwargs.get("port", 6379))
        attributes["net.transport"] = "ip_tcp"
    return attributes


def lane_for(redis: Redis, command: str, stale_s: float) -> Lane | None:
    """A lane on ``redis``, or None on a Redis Cluster.

    A cluster client has no one pool and its pipelines refuse EVALSHA: each call then goes alone
    through the client.
    """
    return None if isinstance(redis, RedisCluster) else Lane(redis, command, stale_s)


class Lane:
    """One connection taken from ``redis``'s pool, for pipelined calls of one command."""

    def __init__(self, redis: Redis, command: str, stale_s: float) -> None:
        self._redis = redis
        self._command = command
        self._stale_s = stale_s
        self._connection: AbstractConnection | None = None
        self._socket_timeout: float | None = None
        self._queued: list[_Call] = []
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._progress = 0.0
        """When the connection last made progress (loop time): a reply, or a write when no call
        was waiting."""
        self._reader: asyncio.Task[None] | None = None
        self._writes: asyncio.Lock | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._flush_due = False
        self._releases: set[asyncio.Task[None]] = set()
        self._attributes: dict[int, dict[str, str | int]] = {}
        """A call's span attributes by its number of arguments (the selection has one)."""

    async def call(self, *args: EncodableT, alone: bool = False) -> Any:
        """Run the command with ``args``; its reply, or the error Redis answered it with.

        ``alone``: no other call can join this one's write (the caller's process serves
        nothing else); it is written at once if no reply is awaited.

        Raises:
            redis.exceptions.ResponseError: Redis answered with an error (``NoScriptError``...).
            redis.exceptions.ConnectionError, TimeoutError: the connection failed or went stale.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        started = time.time_ns()
        self._queued.append((args, future))
        if not self._flush_due:
            # The calls made later in this turn of the loop leave together at its end.
            self._flush_due = True
            loop.call_soon(self._flush)
            if alone and not self._pending and self._writable():
                self._write_queued()
        error = None
        try:
            return await future
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            deferred.finished(
                _tracer,
                self._command,
                SpanKind.CLIENT,
                self._span_attributes(len(args)),
                started,
                error=error,
            )

    def _span_attributes(self, argc: int) -> dict[str, str | int]:
        attributes = self._attributes.get(argc)
        if attributes is None:
            # The SDK copies a span's attributes: one dict serves every call.
            attributes = self._attributes[argc] = {
                **span_attributes(self._redis.connection_pool.connection_kwargs),
                "db.statement": " ".join([self._command] + ["?"] * argc),
                "db.redis.args_length": argc + 1,
            }
        return attributes

    def _flush(self) -> None:
        self._flush_due = False
        if not self._queued:
            return
        if self._writable():
            self._write_queued()
            return
        if self._stale():
            self._drop(RedisTimeoutError(f"no reply from Redis in {self._stale_s} s"))
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(batch), name="redis-lane-send")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _writable(self) -> bool:
        """Whether calls can be written at once.

        Connected, no batch waiting to be written (it would be overtaken) and no reply overdue.
        """
        return self._connection is not None and not self._sends and not self._stale()

    def _write_queued(self) -> None:
        batch, self._queued = self._queued, []
        connection = self._connection
        assert connection is not None
        try:
            commands = self._commands(connection, batch)
            if commands:
                # ``send_packed_command`` without waiting for the socket's buffer to drain: the
                # lane's staleness bound covers a server that stopped reading.
                connection._writer.writelines(commands)  # type: ignore[union-attr]
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            self._drop(exc)

    async def _send(self, batch: list[_Call]) -> None:
        if self._writes is None:
            self._writes = asyncio.Lock()
        try:
            async with self._writes:  # batches leave in order even while one connects
                # Connecting is bounded by the pool's own timeouts.
                connection = await self._connect()
                if commands := self._commands(connection, batch):
                    await connection.send_packed_command(commands, check_health=False)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            self._drop(exc)

    def _commands(self, connection: AbstractConnection, batch: list[_Call]) -> list[bytes]:
        """``batch``'s calls packed for ``connection``, their replies awaited in that order.

        Nothing if no caller still waits, or if an argument cannot be encoded (those calls
        fail, alone).
        """
        # A caller that stopped waiting gets no command: nothing reads its reply.
        live = [(args, future) for args, future in batch if not future.done()]
        if not live:
            return []
        try:
            commands: list[bytes] = connection.pack_commands([(self._command, *a) for a, _ in live])
        except Exception as exc:  # an argument redis-py cannot encode: nothing is sent
            for _, future in live:
                future.set_exception(exc)
            return []
        if not self._pending:
            self._progress = asyncio.get_running_loop().time()
        # In the order written on this connection, which is the order of the replies.
        self._pending.extend(future for _, future in live)
        return commands

    def _stale(self) -> bool:
        """Whether a reply is overdue: the connection is to be dropped before the next write."""
        loop = asyncio.get_running_loop()
        return bool(self._pending) and loop.time() - self._progress > self._stale_s

    async def _connect(self) -> AbstractConnection:
        if self._connection is None:
            pool = self._redis.connection_pool
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            # The lane bounds its waits itself (``stale_s``): no timeout per write or read.
            self._socket_timeout = connection.socket_timeout
            connection.socket_timeout = None
            self._connection = connection
            # One reader for the connection's life: it also sees a server that closes it idle.
            self._reader = asyncio.create_task(self._read(connection), name="redis-lane-read")
        return self._connection

    async def _release(
        self, connection: AbstractConnection, reader: asyncio.Task[None] | None
    ) -> None:
        try:
            if reader is not None:
                # Its reads are over before the pool can hand the connection to anyone.
                await asyncio.gather(reader, return_exceptions=True)
            await connection.disconnect(nowait=True)
        finally:
            connection.socket_timeout = self._socket_timeout
            await self._redis.connection_pool.release(connection)

    async def _read(self, connection: AbstractConnection) -> None:
        try:
            while True:
                try:
                    reply: Any = await connection.read_response(timeout=math.inf)
                except ResponseError as error:
                    reply = error
                if not self._pending:
                    raise RedisConnectionError("Redis sent a reply nobody asked for")
                future = self._pending.popleft()
                self._progress = asyncio.get_running_loop().time()
                if future.done():
                    continue  # its caller stopped waiting
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except Exception as exc:
            self._drop(exc)
        finally:
            if self._reader is asyncio.current_task():
                self._reader = None

    def _drop(self, exc: BaseException) -> None:
        """Fail every call waiting for a reply and disconnect; the next call connects again."""
        pending, self._pending = self._pending, deque()
        for future in pending:
            if not future.done():
                future.set_exception(exc)
        reader, self._reader = self._reader, None
        if reader is asyncio.current_task():
            reader = None
        elif reader is not None:
            reader.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            release = asyncio.get_running_loop().create_task(
                self._release(connection, reader), name="redis-lane-release"
            )
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)

    async def aclose(self) -> None:
        """Fail the calls still waiting and give the connection back to the pool."""
        for task in self._sends:
            task.cancel()
        self._drop(RedisConnectionError("the lane is closed"))
        await asyncio.gather(*self._releases)
