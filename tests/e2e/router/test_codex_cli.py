"""The real Codex CLI (npm ``@openai/codex``) completes a turn through the router."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.router.conftest import Pool, Sim

CODEX_VERSION = "0.169.0"


def codex_binary() -> Path:
    prefix = Path.home() / ".cache" / "codexpool-tests" / f"codex-{CODEX_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "codex"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("NOT TESTED: npm is not installed, so the Codex CLI cannot be installed")
    try:
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                f"@openai/codex@{CODEX_VERSION}",
                "--no-audit",
                "--no-fund",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"NOT TESTED: npm could not install @openai/codex ({exc})")
    return binary


async def test_codex_cli_completes_a_turn_through_the_router(
    sim: Sim, pool: Pool, routers, tmp_path: Path
) -> None:
    binary = codex_binary()
    await pool.setup(sim, [1, 2])
    [router] = routers(1)
    provider = (
        '{name="codexpool",base_url="' + router.url + '/v1",wire_api="responses",env_key="CP_KEY"}'
    )
    home = tmp_path / "codex-home"
    home.mkdir()
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "exec",
        "--skip-git-repo-check",
        "-c",
        'model_provider="codexpool"',
        "-c",
        f"model_providers.codexpool={provider}",
        "-c",
        'model="gpt-5-codex"',
        "Say hello",
        cwd=tmp_path,
        env={**os.environ, "CODEX_HOME": str(home), "CP_KEY": pool.api_key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 45)
    output = stdout.decode() + stderr.decode()
    assert process.returncode == 0, output
    assert "Hello world" in output
    [recorded, *_] = sim.requests()
    assert recorded["headers"]["originator"] == "codex_exec"
    assert "session_id" in recorded["headers"]
