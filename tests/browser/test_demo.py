"""``make demo``: the script brings the stack up, its printed example works, Ctrl-C stops it."""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from codexpool_shared.testing.infra import InfraUrls, unique_namespace
from tests.browser.conftest import delete_namespace
from tests.conftest import REPO_ROOT

DEMO_PORTS = (8080, 8081, 8082, 8083, 8090)


def _free_offset() -> int:
    """A port offset at which all five demo ports are free (the real 808x may be in use).

    Below 32768, where the kernel hands out no ephemeral ports: other tests' services bind
    those, and one could take a demo port between this check and the demo's own.
    """
    for _ in range(50):
        offset = random.randrange(10000, 24000, 100)
        with socket.socket() as probe:
            if all(probe.connect_ex(("127.0.0.1", p + offset)) != 0 for p in DEMO_PORTS):
                return offset
    raise RuntimeError("no free range of demo ports")


class _Output:
    """The demo's output, read on a thread so that waiting for a line has a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(process,), daemon=True)
        self._thread.start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def close(self, process: subprocess.Popen[str]) -> None:
        # The process has exited: the reader sees end of file, then the pipe can be closed.
        self._thread.join(10)
        assert process.stdout is not None
        process.stdout.close()

    def until(self, marker: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if marker in line:
                return "\n".join(self.lines)
        raise AssertionError(f"the demo never printed {marker!r}:\n" + "\n".join(self.lines))


@pytest.mark.timeout(300)
def test_make_demo_runs_the_stack_and_its_example(
    infra: InfraUrls, new_context: Any, tmp_path: Path
) -> None:
    offset = _free_offset()
    command = [sys.executable, "scripts/demo.py", "--port-offset", str(offset)]
    namespace = unique_namespace()
    command += ["--namespace", namespace, "--state-dir", str(tmp_path)]
    env = {**os.environ, "REDIS_URL": infra.redis_url, "AMQP_URL": infra.amqp_url}
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = _Output(process)
    try:
        printed = output.until("(checked: the example just answered", timeout_s=180)
        ui = re.search(r"^UI:\s+(\S+)", printed, re.M)
        token = re.search(r"^Admin token:\s+(\S+)", printed, re.M)
        example = re.search(r"^from openai import OpenAI$.*?^print\(.*?\)$", printed, re.M | re.S)
        assert ui and token and example, printed
        assert "Agent key:     cpk_" in printed

        answer = subprocess.run(
            [sys.executable, "-c", example.group(0)], capture_output=True, text=True, timeout=60
        )
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.strip()

        page: Page = new_context().new_page()
        page.goto(ui.group(1))
        page.get_by_test_id("login-token").fill(token.group(1))
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("pool-title")).to_contain_text("Demo agent")
        for n in (1, 2, 3):
            expect(page.get_by_test_id(f"row-chatgpt-oauth-account-{n}")).to_be_visible()
        expect(page.get_by_test_id("strategy-select")).to_have_value("round-robin")

        process.send_signal(signal.SIGINT)
        output.until("Stopped everything the demo started.", timeout_s=60)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.terminate()  # the demo stops what it started on SIGTERM too
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        output.close(process)
        delete_namespace(infra, namespace)
