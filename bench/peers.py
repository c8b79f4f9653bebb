"""Side by side: codex-sim directly, Codex Pool's router and LiteLLM's proxy over the same accounts.

    uv run python bench/peers.py [--latency-requests 1000] [--rounds 3] [--seconds 4]
                                 [--connections 32] [--failover-requests 100] [--no-litellm]

One codex-sim process (two accounts, zero latency, zero quota cost) is the upstream of every
gateway; each gateway runs one worker. Beside the peers runs issue 18's floor
(``floor/floor_app.py``): a plain FastAPI + aiohttp passthrough with one Redis round trip and a
background publish, what a Python gateway built the ordinary way costs on this machine. With two or
more CPUs the gateway under test has the last CPU to itself (every thread pinned, as ``taskset -a``
does) and codex-sim and the load generator share the others, so a gateway's figures are its own
core's. LiteLLM (pinned to ``LITELLM_VERSION``) is installed from PyPI into an environment of its
own under ``~/.cache/codexpool-bench`` on the first run; never a dependency of the product. Without
PyPI it is skipped with a message.

Every figure is a streamed ``POST /v1/responses``:

1. latency at one connection: requests to every target interleaved one by one; the whole
   response and the time to its first body byte (TTFB) added over the direct request just before.
   LiteLLM is measured after the others, interleaved with the direct request alone (``latency``);
2. throughput at ``--connections`` connections: interleaved rounds (the order rotates), responses
   per second (the router's counted until RabbitMQ confirmed its outcome events) and per
   CPU-second of the gateway's processes;
3. failover: the first account answers 503 on every call; time to a full answer and the share of
   requests the client got a full answer for (Codex Pool: a primary-first pool; LiteLLM: the same
   two deployments ordered, in a proxy of its own started for this step; see ``run_litellm``).

Writes ``bench/results/peer-comparison.md`` (a table) and ``bench/results/peer-comparison.png``
(latency distribution and throughput bars) and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import uvloop
from redis.asyncio import Redis

from codexpool_shared.crypto import Keyring
from codexpool_shared.keys import Keys
from codexpool_shared.store import create_agent, put_pool, register_provider
from codexpool_shared.testing.cleanup import delete_namespaces
from codexpool_shared.testing.measure import cpu_seconds as process_cpu_seconds
from codexpool_shared.testing.measure import pct, router_env
from codexpool_shared.testing.processes import Service, free_port, run_service, stop, wait_ready

LITELLM_VERSION = "1.108.7"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "codexpool-bench"
MODEL = "gpt-5-codex"
BODY = orjson.dumps({"model": MODEL, "input": "hi", "stream": True, "store": False})
FAILOVER_MODEL = "gpt-5-codex-failover"
FLOOR = "floor (FastAPI + aiohttp)"
"""Issue 18's floor (``floor/floor_app.py``): a passthrough with one Redis round trip and a
background publish and nothing else, built the plain way, on the gateway's core."""


# --- processes -------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a LiteLLM proxy may fork its server)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its descendants so far (Linux ``/proc``)."""
    total = 0.0
    for each in descendants(pid):
        with contextlib.suppress(OSError):
            total += process_cpu_seconds(each)
    return total


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` and its descendants onto ``cpus`` (what ``taskset -a -p`` does)."""
    for each in descendants(pid):
        for task in Path(f"/proc/{each}/task").glob("*"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), cpus)


def cpu_layout() -> tuple[set[int], set[int]] | None:
    """(gateway CPUs, sim and load generator CPUs), or None on a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def uv_binary() -> str:
    found = shutil.which("uv")
    return found or str(ROOT / ".tools" / "uv" / "bin" / "uv")


def ensure_litellm() -> Path | None:
    """The ``litellm`` executable of its own environment, installing it on first use.

    Returns None (after saying why) when PyPI cannot be reached or the install fails.
    """
    venv = CACHE / f"litellm-{LITELLM_VERSION}"
    exe = venv / "bin" / "litellm"
    marker = venv / ".installed"
    if exe.exists() and marker.exists():
        return exe
    CACHE.mkdir(parents=True, exist_ok=True)
    uv = uv_binary()
    steps = [
        [uv, "venv", "-q", "--allow-existing", "--python", "python3", str(venv)],
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
         f"litellm[proxy]=={LITELLM_VERSION}"],
    ]  # fmt: skip
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} (first run only)")
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"LiteLLM skipped: could not install it from PyPI ({why})")
            return None
    marker.write_text(LITELLM_VERSION)
    return exe


@contextlib.contextmanager
def run_litellm(
    exe: Path, sim_url: str, tokens: list[str], log_dir: Path, *, failover: bool
) -> Iterator[Service]:
    """LiteLLM's proxy, one worker, the sim accounts as deployments of one model group.

    Both configurations retry twice on another deployment without delay and leave the SDK's own
    retries off. The plain one (``MODEL``, shuffled, LiteLLM's default) never cools a deployment
    down: a keep-alive connection the sim closed while it sat idle between rounds fails one
    request, and a cooldown after it emptied the group for the rest of the window. The failover
    one (``FAILOVER_MODEL``, account 1 first by ``order``) cools a deployment down for 5 s (the
    default) after its second failure in a minute, so the failing account is skipped.
    """
    group = FAILOVER_MODEL if failover else MODEL
    deployments = []
    for i, token in enumerate(tokens):
        params = {"model": "openai/" + MODEL, "api_base": sim_url + "/v1", "api_key": token,
                  "max_retries": 0, **({"order": i + 1} if failover else {})}  # fmt: skip
        deployments.append({"model_name": group, "litellm_params": params})
    routing: dict[str, object] = {"num_retries": 2, "retry_after": 0}
    routing |= {"allowed_fails": 1, "cooldown_time": 5} if failover else {"disable_cooldowns": True}
    config = {
        "model_list": deployments,
        "router_settings": routing,
        "litellm_settings": {"set_verbose": False, "telemetry": False},
        "general_settings": {"master_key": "sk-bench", "disable_spend_logs": True},
    }
    config_path = log_dir / f"litellm-{group}.json"
    config_path.write_text(json.dumps(config))  # LiteLLM reads YAML, and JSON is YAML
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch from GitHub at start
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
    }
    command = [str(exe), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", "1"]  # fmt: skip
    log_path = log_dir / f"litellm-{group}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    service = Service("litellm", port, process, log_path)
    try:
        wait_ready(service.url + "/health/liveliness", timeout_s=120, process=process)
        yield service
    finally:
        stop(process)


# --- the load generator: raw HTTP/1.1 keep-alive, cheaper than the servers it measures ----------


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    port: int
    request: bytes
    pid: int | None = None  # the gateway process (None: codex-sim itself)
    settle_url: str | None = None  # a router: wait for its outcome events before stopping


def http_request(port: int, path: str, headers: dict[str, str], body: bytes = BODY) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "accept: text/event-stream",
             "content-type: application/json", f"content-length: {len(body)}"]  # fmt: skip
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(slots=True)
class Answer:
    status: int
    ttfb: float
    total: float
    complete: bool  # a 200 whose stream reached response.completed


class Connection:
    """One keep-alive connection; reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def send(self, request: bytes) -> Answer:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        started = time.perf_counter()
        self.writer.write(request)
        buffer = b""
        head_end = -1
        first = 0.0
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                await self.close()
                raise ConnectionError("the server closed the connection mid-answer")
            buffer += chunk
            if head_end < 0:
                head_end = buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    continue
                head = buffer[:head_end].lower()
                length = re.search(rb"\r\ncontent-length: *(\d+)", head)
                chunked = b"transfer-encoding: chunked" in head
                closes = b"connection: close" in head
            if not first and len(buffer) > head_end + 4:
                first = time.perf_counter() - started
            if chunked and buffer.endswith(b"\r\n0\r\n\r\n"):
                break
            if length and len(buffer) - head_end - 4 >= int(length.group(1)):
                break
        total = time.perf_counter() - started
        if closes:
            await self.close()
        status = int(buffer[9:12])
        complete = status == 200 and b"response.completed" in buffer
        return Answer(status, first or total, total, complete)


async def settle(client: httpx.AsyncClient, router_url: str) -> None:
    """Until RabbitMQ confirmed every outcome event the router accepted."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = (await client.get(router_url + "/metrics")).text
        match = re.search(r"^codexpool_event_buffer_depth (\S+)$", text, re.MULTILINE)
        if match is None or float(match.group(1)) == 0:
            return
        await asyncio.sleep(0.01)


# --- the three measurements ---------------------------------------------------------------------


@dataclass
class Results:
    whole: dict[str, list[float]] = field(default_factory=dict)  # ms at one connection
    added_whole: dict[str, list[float]] = field(default_factory=dict)
    added_ttfb: dict[str, list[float]] = field(default_factory=dict)
    rates: dict[str, list[float]] = field(default_factory=dict)  # per round
    per_cpu: dict[str, list[float]] = field(default_factory=dict)
    failover: dict[str, tuple[list[float], int, int]] = field(default_factory=dict)


async def latency(
    targets: list[Target], n: int, results: Results, apart: list[Target] | None = None
) -> None:
    """One connection per target; request i goes to every target in turn (order rotating).

    Each ``apart`` gateway is measured after the others, interleaved with the direct request
    alone: LiteLLM's proxy spends about 17 ms of CPU per request on the gateways' shared core,
    and interleaved with it the others ran each request on caches it had just evicted (README,
    Benchmarks).
    """
    await _latency(targets, n, results)
    for gateway in apart or []:
        await _latency([targets[0], gateway], n, results)


async def _latency(targets: list[Target], n: int, results: Results) -> None:
    conns = {t.name: Connection(t.port) for t in targets}
    direct, gateways = targets[0], targets[1:]
    results.whole.setdefault(direct.name, [])
    for t in gateways:
        results.whole[t.name] = []
        results.added_whole[t.name], results.added_ttfb[t.name] = [], []
    for _ in range(100):  # warm-up: the gateways have just started
        for t in targets:
            await conns[t.name].send(t.request)
    for i in range(n):
        for k in range(len(gateways)):
            gateway = gateways[(i + k) % len(gateways)]
            base = await conns[direct.name].send(direct.request)
            routed = await conns[gateway.name].send(gateway.request)
            if not (base.complete and routed.complete):
                raise RuntimeError(f"{gateway.name}: HTTP {routed.status} at one connection")
            results.whole[direct.name].append(base.total * 1000)
            results.whole[gateway.name].append(routed.total * 1000)
            results.added_whole[gateway.name].append((routed.total - base.total) * 1000)
            results.added_ttfb[gateway.name].append((routed.ttfb - base.ttfb) * 1000)
    for c in conns.values():
        await c.close()


async def load(target: Target, connections: int, seconds: float) -> tuple[float, float | None]:
    """Responses per second at ``connections`` connections, and per CPU-second of the gateway."""
    done = 0
    failed = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done, failed
        conn = Connection(target.port)
        try:
            while time.perf_counter() < stop_at:
                answer = await conn.send(target.request)
                if answer.complete:
                    done += 1
                else:
                    failed += 1
        finally:
            await conn.close()

    cpu = cpu_seconds(target.pid) if target.pid else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    if target.settle_url:
        async with httpx.AsyncClient() as client:
            await settle(client, target.settle_url)
    wall = time.perf_counter() - started
    if failed:
        print(f"  {target.name}: {failed} answers were not a complete 200 stream")
    per_cpu = done / (cpu_seconds(target.pid) - cpu) if target.pid else None
    return done / wall, per_cpu


async def throughput(
    targets: list[Target], rounds: int, connections: int, seconds: float, results: Results
) -> None:
    for t in targets:
        await load(t, connections, 1.0)  # warm-up
        results.rates[t.name], results.per_cpu[t.name] = [], []
    for r in range(rounds):
        for k in range(len(targets)):
            t = targets[(r + k) % len(targets)]
            rate, per_cpu = await load(t, connections, seconds)
            results.rates[t.name].append(rate)
            if per_cpu is not None:
                results.per_cpu[t.name].append(per_cpu)
            print(f"  round {r + 1}: {t.name:<12} {rate:8.0f} responses/s")


async def failover(targets: list[Target], n: int, results: Results) -> None:
    """Sequential requests to each gateway's failover route while account 1 answers 503."""
    for t in targets:
        conn = Connection(t.port)
        times, ok = [], 0
        for _ in range(n):
            try:
                answer = await conn.send(t.request)
            except ConnectionError:
                await conn.close()
                continue
            times.append(answer.total * 1000)
            ok += answer.complete
        await conn.close()
        results.failover[t.name] = (times, ok, n)


# --- report -----------------------------------------------------------------------------------


def commit() -> str:
    """The commit measured, and whether the product's code differed from it."""

    def git(*args: str) -> str:
        # No optional locks: other work in the same checkout may be committing meanwhile.
        env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
        done = subprocess.run(["git", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("diff", "--name-only", "HEAD", "--", "services", "shared/src", "tools")
    return head + (" (with uncommitted changes)" if changed else "")


def report(results: Results, args: argparse.Namespace, layout: str, load_before: str) -> str:
    names = list(results.whole)
    direct = names[0]
    lines = [
        f"Commit {commit()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"load average before the run {load_before}; {layout}.",
        "",
        "| target | whole response p50 / p99 (1 conn) | added whole p50 / p99 "
        "| added TTFB p50 / p99 "
        f"| responses/s at {args.connections} conns (median of {args.rounds}) | per gateway CPU-s "
        "| failover: full answer p50 / p99 | failover success |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        w = results.whole[name]
        row = [name, f"{pct(w, 0.5):.2f} / {pct(w, 0.99):.2f} ms"]
        if name == direct:
            row += ["-", "-"]
        else:
            aw, at = results.added_whole[name], results.added_ttfb[name]
            row += [f"+{pct(aw, 0.5):.2f} / +{pct(aw, 0.99):.2f} ms",
                    f"+{pct(at, 0.5):.2f} / +{pct(at, 0.99):.2f} ms"]  # fmt: skip
        rates = results.rates[name]
        row.append(f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})")
        cpu = results.per_cpu.get(name)
        row.append(f"{statistics.median(cpu):,.0f}" if cpu else "-")
        if name in results.failover:
            times, ok, n = results.failover[name]
            row.append(f"{pct(times, 0.5):.2f} / {pct(times, 0.99):.2f} ms" if times else "-")
            row.append(f"{ok}/{n} ({100 * ok / n:.0f} %)")
        else:
            row += ["-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def chart(results: Results, path: Path, title: str) -> None:
    import matplotlib  # a bench-only dependency (dev group): imported where it is used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results.whole)
    colors = ["#888888", "#2a6fdb", "#7fb069", "#d9822b"][: len(names)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, color in zip(names, colors, strict=True):
        values = sorted(results.whole[name])
        share = [(i + 1) / len(values) for i in range(len(values))]
        left.plot(values, share, label=name, color=color)
    left.set_xscale("log")
    left.set_xlabel("whole streamed response at 1 connection (ms, log scale)")
    left.set_ylabel("share of requests at or below")
    left.legend(loc="lower right")
    left.grid(alpha=0.3)
    medians = [statistics.median(results.rates[n]) for n in names]
    lows = [m - min(results.rates[n]) for n, m in zip(names, medians, strict=True)]
    highs = [max(results.rates[n]) - m for n, m in zip(names, medians, strict=True)]
    bars = right.bar(names, medians, color=colors, yerr=[lows, highs], capsize=4)
    right.bar_label(bars, labels=[f"{m:,.0f}" for m in medians])
    right.set_yscale("log")
    right.set_ylabel("streamed responses/s (log scale; bars: min-max of rounds)")
    right.set_title("throughput at the bench's connections, one worker", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    load_before = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    exe = None if args.no_litellm else ensure_litellm()
    namespace = "bench-peers-" + uuid.uuid4().hex[:8]
    secret = base64.b64encode(os.urandom(32)).decode()
    tmp = Path(tempfile.mkdtemp(prefix="peers-bench-"))
    redis = Redis.from_url(REDIS_URL)
    keys = Keys(namespace)
    layout = cpu_layout()
    sim_args = ["--accounts", "2", "--write-auth", str(tmp / "auth"), "--primary-cost", "0",
                "--secondary-cost", "0", "--record-limit", "100"]  # fmt: skip
    results = Results()
    try:
        with run_service("codexpool_sim", env={}, log_dir=tmp, args=sim_args, name="sim") as sim:
            docs = [orjson.loads((tmp / "auth" / f"account-{n}.auth.json").read_bytes())
                    for n in (1, 2)]  # fmt: skip
            ring = Keyring.from_secret(secret)
            for n, doc in enumerate(docs, start=1):
                await register_provider(redis, keys, ring, f"account-{n}", doc)
            _, key = await create_agent(redis, keys, "peers")
            await put_pool(redis, keys, "peers", "round-robin", ["account-1", "account-2"])
            _, fo_key = await create_agent(redis, keys, "peers-fo")
            await put_pool(redis, keys, "peers-fo", "primary-first", ["account-1", "account-2"])
            env = router_env(REDIS_URL, AMQP_URL, namespace, secret, sim.url)
            tokens = [doc["tokens"]["access_token"] for doc in docs]
            with contextlib.ExitStack() as stack:
                router = stack.enter_context(
                    run_service("codexpool_router", env=env, log_dir=tmp, name="router")
                )
                plain = contextlib.ExitStack()
                stack.enter_context(plain)
                litellm = (
                    plain.enter_context(run_litellm(exe, sim.url, tokens, tmp, failover=False))
                    if exe
                    else None
                )
                floor = stack.enter_context(
                    run_service(
                        "uvicorn",
                        env={
                            "FLOOR_UPSTREAM": sim.url + "/v1/responses",
                            "FLOOR_TOKEN": tokens[0],
                            "REDIS_URL": REDIS_URL,
                            "AMQP_URL": AMQP_URL,
                        },  # fmt: skip
                        log_dir=tmp,
                        args=[
                            "--loop",
                            "uvloop",
                            "--http",
                            "httptools",
                            "--no-access-log",
                            "--app-dir",
                            str(ROOT / "bench" / "floor"),
                            "floor_app:app",
                        ],  # fmt: skip
                        name="floor",
                    )
                )
                gateways, others = layout or (set(), set())
                if layout:
                    for gateway in (router, floor, litellm):
                        if gateway:
                            pin(gateway.process.pid, gateways)
                    pin(sim.process.pid, others)
                    os.sched_setaffinity(0, others)
                direct = Target("codex-sim", sim.port,
                                http_request(sim.port, "/v1/responses",
                                             {"authorization": f"Bearer {tokens[1]}"}))  # fmt: skip

                def routed(agent_key: str) -> Target:
                    headers = {"authorization": f"Bearer {agent_key}"}
                    return Target("Codex Pool", router.port,
                                  http_request(router.port, "/v1/responses", headers),
                                  router.process.pid, router.url)  # fmt: skip

                def proxied(proxy: Service, model: str) -> Target:
                    body = orjson.dumps(
                        {"model": model, "input": "hi", "stream": True, "store": False}
                    )
                    headers = {"authorization": "Bearer sk-bench"}
                    return Target(f"LiteLLM {LITELLM_VERSION}", proxy.port,
                                  http_request(proxy.port, "/v1/responses", headers, body),
                                  proxy.process.pid)  # fmt: skip

                floor_target = Target(FLOOR, floor.port,
                                      http_request(floor.port, "/v1/responses", {}),
                                      floor.process.pid)  # fmt: skip
                targets = [direct, routed(key), floor_target]
                apart = [proxied(litellm, MODEL)] if litellm else []
                print(
                    f"latency at 1 connection ({args.latency_requests} interleaved requests each)"
                )
                await latency(targets, args.latency_requests, results, apart)
                targets += apart
                print(f"throughput at {args.connections} connections")
                await throughput(targets, args.rounds, args.connections, args.seconds, results)
                print("failover: account-1 answers 503 on every call")
                async with httpx.AsyncClient(base_url=sim.url) as client:
                    fault = {"kind": "http_error", "status": 503, "probability": 1.0}
                    (
                        await client.post("/_sim/accounts/account-1/faults", json=fault)
                    ).raise_for_status()
                plain.close()
                fo_targets = [routed(fo_key)]
                if exe:
                    proxy = stack.enter_context(
                        run_litellm(exe, sim.url, tokens, tmp, failover=True)
                    )
                    if layout:
                        pin(proxy.process.pid, gateways)
                    fo_targets.append(proxied(proxy, FAILOVER_MODEL))
                await failover(fo_targets, args.failover_requests, results)
                await settle(httpx.AsyncClient(), router.url)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        await redis.aclose()
        await delete_namespaces(REDIS_URL, AMQP_URL, [namespace])
    where = (
        f"one worker per gateway pinned to CPU {sorted(layout[0])}, codex-sim and the load "
        f"generator on CPU {sorted(layout[1])}"
        if layout
        else "one CPU, nothing pinned"
    )
    table = report(results, args, where, load_before)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peer-comparison.md").write_text(table)
    chart(
        results, RESULTS / "peer-comparison.png", f"streamed POST /v1/responses, commit {commit()}"
    )
    print(table)
    print(f"written: {RESULTS / 'peer-comparison.md'}, {RESULTS / 'peer-comparison.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # A p99 of 300 requests was their third-slowest: one scheduling hiccup moved it by 1 ms.
    parser.add_argument("--latency-requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--failover-requests", type=int, default=100)
    parser.add_argument("--no-litellm", action="store_true", help="Codex Pool and the sim only")
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
