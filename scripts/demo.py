"""``make demo``: the whole Codex Pool stack on this machine, with codex-sim as the upstream.

Starts codex-sim (three accounts), the router, the health service, the admin API and the UI as
local processes against the local Redis and RabbitMQ, registers the three accounts, creates
``demo-agent`` with a round-robin pool of all three, checks that the printed ``openai`` example
answers, and prints what you need. ``--traffic`` keeps synthetic traffic flowing (with an
occasional injected fault) so that the pool page is alive. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from redis import Redis

from codexpool_shared.keys import Keys
from codexpool_sim.seed import DEMO_AGENT, SeedError, seed_demo

STATE = Path(".demo")
NAMESPACE = "codexpool-demo"
AGENT = DEMO_AGENT
MODEL = "gpt-5-codex"
PORTS = {"router": 8080, "admin-api": 8081, "ui": 8082, "health": 8083, "codex-sim": 8090}
MODULES = {
    "codex-sim": "codexpool_sim",
    "router": "codexpool_router",
    "health": "codexpool_health",
    "admin-api": "codexpool_admin_api",
    "ui": "codexpool_ui",
}
# Rare, short faults, so that the page shows failovers and health dips without losing the pool.
FAULTS = (
    {"kind": "http_error", "status": 500, "count": 3},
    {"kind": "response_failed", "count": 2},
    {"kind": "rate_limit", "count": 2},
)

EXAMPLE = """\
from openai import OpenAI

client = OpenAI(base_url="{router}/v1", api_key="{api_key}")
response = client.responses.create(model="{model}", input="Say hello from the pool")
print(response.output_text)
"""


class DemoError(Exception):
    """Something the person running the demo can fix; printed without a traceback."""


@dataclass
class Stack:
    """Where the running services are, and the credentials the demo made."""

    urls: dict[str, str]
    admin_token: str
    viewer_token: str = ""
    api_key: str = ""


def _say(text: str = "") -> None:
    print(text, flush=True)  # noqa: T201 - the demo's output is its interface


def _check_ports(ports: dict[str, int]) -> None:
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                raise DemoError(
                    f"port {port} ({name}) is taken: stop what listens there (an earlier "
                    "`make demo`?), or move every demo port with --port-offset N"
                )


def _check_infra(redis_url: str, amqp_url: str) -> None:
    for label, url, default in (("Redis", redis_url, 6379), ("RabbitMQ", amqp_url, 5672)):
        parts = urlsplit(url)
        try:
            socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or default), 2
            ).close()
        except OSError:
            raise DemoError(f"{label} does not answer at {url}: run `make services`") from None


def _clear_namespace(redis_url: str, namespace: str) -> None:
    """A fresh start: the previous run's data was encrypted with a key that no longer exists."""
    with Redis.from_url(redis_url, socket_timeout=5) as redis:
        keys = list(redis.scan_iter(match=Keys(namespace).pattern, count=1000))
        for start in range(0, len(keys), 500):
            redis.delete(*keys[start : start + 500])


def _wait_ready(name: str, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise DemoError(f"{name} exited with {process.returncode}; its log ({log}):\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DemoError(f"{name} was not ready within 60 s; see {log}")


@contextmanager
def _service(
    name: str, port: int, env: dict[str, str], logs: Path, args: list[str] | None = None
) -> Iterator[str]:
    log = logs / f"{name}.log"
    command = [sys.executable, "-m", MODULES[name], "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen([*command, *(args or [])], env=env, stdout=out, stderr=out)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(name, url, process, log)
            _say(f"  {name:<10} {url}  (log: {log})")
            yield url
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


def _admin_call(stack: Stack, method: str, path: str, body: object = None) -> dict[str, object]:
    response = httpx.request(
        method,
        stack.urls["admin-api"] + path,
        json=body,
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=20,
    )
    if response.status_code >= 400:
        raise DemoError(
            f"admin API {method} {path} answered {response.status_code}: {response.text}"
        )
    return dict(response.json())


def _configure(stack: Stack, auth_dir: Path) -> list[str]:
    """The demo pool, made as compose's init service makes it (codexpool_sim.seed)."""
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.urls["admin-api"], headers=headers, timeout=20) as client:
        try:
            seeded = seed_demo(client, auth_dir, AGENT)
        except SeedError as exc:
            raise DemoError(str(exc)) from None
    if seeded.api_key is None:
        raise DemoError(f"{AGENT} existed before the demo started: its namespace was not fresh")
    stack.api_key = seeded.api_key
    viewer = _admin_call(stack, "POST", "/api/tokens", {"name": "demo viewer", "role": "viewer"})
    stack.viewer_token = str(viewer["token"])
    return seeded.providers


def _check_example(stack: Stack) -> str:
    """Runs the printed example, so that what the demo prints is known to work."""
    from openai import OpenAI

    client = OpenAI(base_url=stack.urls["router"] + "/v1", api_key=stack.api_key, max_retries=0)
    response = client.responses.create(model=MODEL, input="Say hello from the pool")
    return response.output_text


def _check_events(stack: Stack) -> None:
    """The page's numbers come from the router's outcome events: say so if none get through."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        metrics = httpx.get(stack.urls["router"] + "/metrics", timeout=5).text
        if re.search(r"^codexpool_events_published_total [1-9]", metrics, re.M):
            return
        time.sleep(0.5)
    _say(
        "warning: the router has published no outcome events to RabbitMQ yet, so the page's "
        "numbers stay at 0; check that RabbitMQ answers (router log in the state directory)"
    )


def _traffic(stack: Stack, stop: threading.Event, rate_per_s: float) -> None:
    """Steady requests through the router, and now and then a short fault in one account."""
    sim = stack.urls["codex-sim"]
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    body = {"model": MODEL, "input": "synthetic demo traffic", "stream": True}
    sent = failed = 0
    next_fault = time.monotonic() + 20
    next_report = time.monotonic() + 30
    with httpx.Client(base_url=stack.urls["router"], headers=headers, timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.post("/v1/responses", json=body)
                failed += response.status_code != 200
            except httpx.HTTPError:
                failed += 1
            sent += 1
            now = time.monotonic()
            if now >= next_fault:
                account = f"account-{random.randint(1, 3)}"
                fault = random.choice(FAULTS)
                httpx.post(f"{sim}/_sim/accounts/{account}/faults", json=fault, timeout=5)
                _say(f"  traffic: injected {fault['kind']} x{fault['count']} into sim {account}")
                next_fault = now + random.uniform(30, 60)
            if now >= next_report:
                _say(f"  traffic: {sent} requests sent, {failed} answered with an error")
                next_report = now + 30
            stop.wait(random.expovariate(rate_per_s))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Run the demo; the exit code is 0 after Ctrl-C, 1 when the stack could not start."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--traffic", action="store_true", help="keep synthetic traffic flowing")
    parser.add_argument(
        "--rate", type=float, default=2.0, help="requests per second with --traffic"
    )
    parser.add_argument("--port-offset", type=int, default=0, help="add N to every port")
    parser.add_argument("--exit", action="store_true", help="stop once the stack is checked")
    parser.add_argument(
        "--namespace", default=NAMESPACE, help="Redis and RabbitMQ namespace (wiped at start)"
    )
    parser.add_argument("--state-dir", type=Path, default=STATE, help="logs and auth.json files")
    args = parser.parse_args()
    # Ctrl-C and SIGTERM both end in the clean stop below, even when the shell that started us
    # ignores SIGINT (a background job does).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    ports = {name: port + args.port_offset for name, port in PORTS.items()}
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")  # noqa: TID251
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")  # noqa: TID251
    try:
        _check_ports(ports)
        _check_infra(redis_url, amqp_url)
        _clear_namespace(redis_url, args.namespace)
        return _run(args, ports, redis_url, amqp_url)
    except DemoError as exc:
        _say(f"make demo: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, ports: dict[str, int], redis_url: str, amqp_url: str) -> int:
    logs = args.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    auth_dir = args.state_dir / "auth"
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    stack = Stack(urls=urls, admin_token="cpa_" + secrets.token_urlsafe(32))
    env = {
        **os.environ,  # noqa: TID251 - the services inherit PATH, OTEL_* and the like
        "REDIS_URL": redis_url,
        "AMQP_URL": amqp_url,
        "CODEXPOOL_NAMESPACE": args.namespace,
        "CODEXPOOL_SECRET_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CODEXPOOL_ADMIN_TOKEN": stack.admin_token,
        "CODEXPOOL_UPSTREAM_BASE_URL": urls["codex-sim"] + "/backend-api",
        "CODEXPOOL_AUTH_BASE_URL": urls["codex-sim"],
        "CODEXPOOL_ADMIN_API_URL": urls["admin-api"],
        "CODEXPOOL_API_DOCS": "true",
    }
    # Cheap requests, so that hours of --traffic do not exhaust the sim accounts' quota.
    sim_args = ["--accounts", "3", "--write-auth", str(auth_dir), "--primary-cost", "0.02"]
    sim_args += ["--secondary-cost", "0.002", "--ttfb-ms", "120", "--event-delay-ms", "15"]
    _say("Starting Codex Pool (Ctrl-C stops everything):")
    stop = threading.Event()
    try:
        with ExitStack() as processes:
            processes.enter_context(_service("codex-sim", ports["codex-sim"], env, logs, sim_args))
            for name in ("router", "health", "admin-api", "ui"):
                processes.enter_context(_service(name, ports[name], env, logs))
            _configure(stack, auth_dir)
            _print_summary(stack, _check_example(stack))
            _check_events(stack)
            if args.exit:
                return 0
            if args.traffic:
                threading.Thread(
                    target=_traffic, args=(stack, stop, args.rate), daemon=True
                ).start()
                _say("Synthetic traffic is flowing (--traffic).")
            else:
                _say("For a live page, run `make demo DEMO_ARGS=--traffic` (synthetic traffic).")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        # Whenever Ctrl-C comes, leaving the ExitStack above has stopped every process.
        stop.set()
    _say("\nStopped everything the demo started.")
    return 0


def _print_summary(stack: Stack, answer: str) -> None:
    ui = stack.urls["ui"]
    _say()
    _say(f"UI:            {ui}/agents/{AGENT}/codex-pool")
    _say(f"Admin token:   {stack.admin_token}   (sign in to the UI with it)")
    _say(f"Viewer token:  {stack.viewer_token}   (read-only)")
    _say(f"Agent:         {AGENT}, round-robin over chatgpt-oauth-account-1..3")
    _say(f"Agent key:     {stack.api_key}")
    _say()
    _say("Call the router with the openai SDK (uv run python - <<'EOF' ... EOF):")
    _say()
    _say(EXAMPLE.format(router=stack.urls["router"], api_key=stack.api_key, model=MODEL))
    _say(f"(checked: the example just answered {answer!r})")
    _say()


if __name__ == "__main__":
    sys.exit(main())
