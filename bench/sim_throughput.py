"""codex-sim throughput: streamed responses per second from one ``codexpool-sim`` process.

The sim runs as a real uvicorn process at zero latency and zero quota cost; client processes
keep HTTP/1.1 connections open and stream Codex-style requests (the §13 body, full SSE
transcript) as fast as the sim answers. The client is raw asyncio so that it costs less CPU
than the server it measures. Besides the wall-clock rate it prints responses per CPU-second of
the sim process, the figure that survives a busy machine (clients share its cores).

    uv run python bench/sim_throughput.py [--seconds 10] [--connections 64] [--client-procs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import subprocess
import sys
import time

import httpx
import uvloop

from codexpool_shared.testing.measure import cpu_seconds
from codexpool_shared.testing.processes import free_port

ROUTES = {"codex": "/backend-api/codex/responses", "v1": "/v1/responses"}


def build_request(port: int, path: str, token: str, account_id: str) -> bytes:
    body = json.dumps(
        {
            "model": "gpt-5-codex",
            "stream": True,
            "store": False,
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hello"}],
                }
            ],
            "tools": [],
            "tool_choice": "auto",
            "parallel_tool_calls": True,
            "reasoning": {"summary": "auto"},
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "bench-session",
        }
    ).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {token}\r\n"
        f"chatgpt-account-id: {account_id}\r\naccept: text/event-stream\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(port: int, request: bytes, stop_at: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            writer.write(request)
            buffer = b""
            while not buffer.endswith(b"\r\n0\r\n\r\n"):
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("sim closed the connection")
                buffer += chunk
            if not buffer.startswith(b"HTTP/1.1 200") or b"event: response.completed" not in buffer:
                raise RuntimeError(f"unexpected answer: {buffer[:200]!r}")
            counts[0] += 1
    finally:
        writer.close()


async def _client(
    port: int, request: bytes, connections: int, warmup: float, seconds: float
) -> tuple[int, int]:
    warm = [0]
    await asyncio.gather(
        *(_connection(port, request, time.monotonic() + warmup, warm) for _ in range(connections))
    )
    counts = [0]
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(_connection(port, request, stop_at, counts) for _ in range(connections)))
    return warm[0], counts[0]


def client_process(args: tuple[int, bytes, int, float, float]) -> tuple[int, int]:
    return uvloop.run(_client(*args))


def start_sim(port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "codexpool_sim", "--accounts", "3", "--port", str(port)]
    command += ["--primary-cost", "0", "--secondary-cost", "0", "--record-limit", "1000"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("codexpool-sim did not start") from None
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=64, help="per client process")
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--route", choices=sorted(ROUTES), default="codex")
    args = parser.parse_args()

    port = free_port()
    sim = start_sim(port)
    try:
        auth = httpx.get(f"http://127.0.0.1:{port}/_sim/accounts/account-1/auth").json()["tokens"]
        request = build_request(port, ROUTES[args.route], auth["access_token"], auth["account_id"])
        job = (port, request, args.connections, args.warmup, args.seconds)
        with multiprocessing.get_context("spawn").Pool(args.client_procs) as pool:
            cpu_before = cpu_seconds(sim.pid)
            results = pool.map(client_process, [job] * args.client_procs)
            cpu_used = cpu_seconds(sim.pid) - cpu_before
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    total = sum(measured for _, measured in results)
    everything = sum(warm + measured for warm, measured in results)
    rate = total / args.seconds
    connections = args.connections * args.client_procs
    print(
        f"codex-sim: {rate:,.0f} streamed responses/s ({total} in {args.seconds:.0f} s, "
        f"route {args.route}, {connections} connections from {args.client_procs} client "
        "process(es), zero latency, one sim process)"
    )
    per_cpu = everything / cpu_used
    print(f"codex-sim: {per_cpu:,.0f} streamed responses per CPU-second of the sim process")


if __name__ == "__main__":
    main()
