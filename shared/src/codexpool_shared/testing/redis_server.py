"""A private ``redis-server`` for tests that stop, restart or pause Redis (never the shared one).

::

    with private_redis(tmp_path) as store:
        env = {"REDIS_URL": store.url}
        store.stop()   # SHUTDOWN SAVE: clients get "connection refused"
        store.start()  # the same port, the same data (the snapshot taken on stop)
        store.pause()  # SIGSTOP: connections stay open and nothing answers
        store.resume()

The server keeps no snapshot and no AOF on its own (``--save '' --appendonly no``); ``stop`` saves
one explicitly into the test's directory so that ``start`` comes back with the data. The process
is killed (after a SIGCONT) when the block ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from codexpool_shared.testing.processes import free_port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """One ``redis-server`` process on a free port, in its own directory."""

    def __init__(self, directory: Path, options: Sequence[str] = ()) -> None:
        """``options`` are more ``redis-server`` arguments (a cluster node's, say)."""
        self.port = free_port()
        self.directory = directory
        self.options = tuple(options)
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the services under test."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    *self.options,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while not _ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Save the data and shut the server down (its clients then get connection refused)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock:
            sock.sendall(b"SHUTDOWN SAVE\r\n")
            with contextlib.suppress(OSError):
                sock.recv(64)
        if self.process is not None:
            self.process.wait(timeout_s)

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, the server answers nothing."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT: the server answers again, connections intact."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL (after a SIGCONT if paused), without saving."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if self.paused:
            self.resume()
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[PrivateRedis]:
    """A started private Redis, killed when the block ends."""
    server = PrivateRedis(directory)
    try:
        server.start()
        yield server
    finally:
        server.kill()
