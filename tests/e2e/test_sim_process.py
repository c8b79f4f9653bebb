"""``codexpool-sim`` as its own process, the way the demo and the benchmarks run it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def sim_process(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    port = _free_port()
    auth_dir = tmp_path / "auth"
    command = [
        sys.executable,
        "-m",
        "codexpool_sim",
        "--accounts",
        "3",
        "--port",
        str(port),
        "--write-auth",
        str(auth_dir),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            assert process.poll() is None, "codexpool-sim exited during startup"
            try:
                if httpx.get(f"{base_url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "codexpool-sim did not start within 20 s"
            time.sleep(0.05)
        yield base_url, auth_dir, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_process_writes_auth_files_and_serves_them(
    sim_process: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base_url, auth_dir, _ = sim_process
    summary = json.loads((auth_dir / "accounts.json").read_text())["accounts"]
    assert [s["auth_file"] for s in summary] == [f"account-{i}.auth.json" for i in (1, 2, 3)]
    listed = httpx.get(f"{base_url}/_sim/accounts").json()["accounts"]
    assert [a["account_id"] for a in listed] == [s["account_id"] for s in summary]

    auth = json.loads((auth_dir / "account-2.auth.json").read_text())
    client = openai.OpenAI(api_key=auth["tokens"]["access_token"], base_url=f"{base_url}/v1")
    with client.responses.stream(model="gpt-5-codex", input="hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello world"
    recorded = httpx.get(f"{base_url}/_sim/requests", params={"path": "/v1/responses"}).json()[
        "requests"
    ]
    assert recorded[-1]["account_id"] == auth["tokens"]["account_id"]


def test_process_prints_account_ids(sim_process: tuple[str, Path, subprocess.Popen[str]]) -> None:
    base_url, auth_dir, process = sim_process
    process.terminate()
    output, _ = process.communicate(timeout=10)
    ids = [
        json.loads(p.read_text())["tokens"]["account_id"]
        for p in sorted(auth_dir.glob("account-*.auth.json"))
    ]
    for account_id in ids:
        assert account_id in output
    assert "listening on " + base_url in output
