"""Starting real service processes for end-to-end tests: free ports, readiness, clean stops.

Every service (and codex-sim) is a ``python -m <module> --host 127.0.0.1 --port P`` process;
``run_service`` starts one with the environment given, waits for its readiness URL with a
deadline, and always stops it (SIGTERM, then SIGKILL). Output goes to a log file the test can
read afterwards (the canary test scans it for secrets).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

PYCACHE = Path(tempfile.gettempdir()) / "codexpool-test-pycache"
"""Where service processes started here keep their bytecode."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Service:
    """A running service process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything it wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


def wait_ready(
    url: str, *, timeout_s: float = 60.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers 200, the process exits, or ``timeout_s`` passes.

    Raises:
        RuntimeError: The process died or the deadline passed.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode} before {url} was up")
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout_s} s ({last})")


def stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How to start one service: ``python -m module --host 127.0.0.1 --port P *args``."""

    module: str
    env: Mapping[str, str]
    args: Sequence[str] = ()
    ready_path: str = "/readyz"
    name: str | None = None
    port: int | None = None


def _spawn(spec: ServiceSpec, log_dir: Path) -> Service:
    port = spec.port or free_port()
    label = spec.name or f"{spec.module}-{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{label}.log"
    full_env = {
        **os.environ,  # noqa: TID251 - a child process inherits the test's environment
        # Byte-compiling every module at each start costs seconds of CPU per process; cache
        # the bytecode outside the source tree instead.
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        **spec.env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                spec.module,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *spec.args,
            ],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Service(label, port, process, log_path)


def stop_all(services: Sequence[Service], timeout_s: float = 10.0) -> None:
    """Stop several services at once: SIGTERM to all, then wait (SIGKILL past ``timeout_s``)."""
    for service in services:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
    for service in services:
        stop(service.process, timeout_s)


@contextlib.contextmanager
def run_services(
    specs: Sequence[ServiceSpec], *, log_dir: Path, timeout_s: float = 60.0
) -> Iterator[list[Service]]:
    """Start every service of ``specs`` together, wait until all are ready, stop all at the end.

    Args:
        specs: What to start.
        log_dir: Where each ``<name>.log`` is written.
        timeout_s: Deadline for readiness, shared by all.

    Yields:
        The running services, in the order of ``specs``.
    """
    services: list[Service] = []
    try:
        for spec in specs:
            services.append(_spawn(spec, log_dir))
        for spec, service in zip(specs, services, strict=True):
            try:
                wait_ready(
                    service.url + spec.ready_path, timeout_s=timeout_s, process=service.process
                )
            except RuntimeError as exc:
                tail = service.log()[-4000:]
                raise RuntimeError(f"{service.name}: {exc}\n--- log ---\n{tail}") from None
        yield services
    finally:
        stop_all(services)


@contextlib.contextmanager
def run_service(
    module: str,
    *,
    env: Mapping[str, str],
    log_dir: Path,
    port: int | None = None,
    args: Sequence[str] = (),
    ready_path: str = "/readyz",
    timeout_s: float = 60.0,
    name: str | None = None,
) -> Iterator[Service]:
    """Run ``python -m module --host 127.0.0.1 --port P *args`` until the block ends.

    Args:
        module: The module to run (``codexpool_router``, ``codexpool_sim``, ...).
        env: Variables added to this process's environment.
        log_dir: Where ``<name>.log`` is written.
        port: The port; a free one when omitted.
        args: More command-line arguments.
        ready_path: Polled until it answers 200.
        timeout_s: Deadline for readiness.
        name: Names the log file; the module and port by default.

    Yields:
        The running service.
    """
    spec = ServiceSpec(module, env, args, ready_path, name, port)
    with run_services([spec], log_dir=log_dir, timeout_s=timeout_s) as [service]:
        yield service
