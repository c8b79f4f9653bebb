"""``make bootstrap`` on a distribution whose python3 is externally managed (PEP 668).

The shim stands in for Debian's or Ubuntu's python3: ``python3 -m pip install`` outside a
virtual environment fails the way theirs does, everything else is the real interpreter.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

_PIP_REFUSES = """#!/usr/bin/env bash
if [[ "$1 $2" == "-m pip" ]]; then
  echo "error: externally-managed-environment" >&2
  exit 1
fi
"""
_NO_VENV = """#!/usr/bin/env bash
if [[ "$1 $2" == "-m venv" ]]; then
  echo "Error: ensurepip is not available (The virtual environment was not created.)" >&2
  exit 1
fi
"""


def _checkout(tmp_path: Path, python3_prelude: str) -> tuple[Path, dict[str, str]]:
    """The Makefile and its bootstrap script, and a PATH whose python3 behaves as described."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "Makefile", checkout / "Makefile")
    shutil.copy2(REPO_ROOT / "scripts" / "bootstrap-uv.sh", checkout / "scripts")
    shims = tmp_path / "bin"
    shims.mkdir()
    python3 = shims / "python3"
    python3.write_text(f'{python3_prelude}exec "{sys.base_prefix}/bin/python3" "$@"\n')
    python3.chmod(python3.stat().st_mode | stat.S_IXUSR)
    env = {
        "PATH": f"{shims}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    return checkout, env


def _make(checkout: Path, env: dict[str, str], target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-C", str(checkout), target],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )


@pytest.mark.timeout(180)
def test_bootstrap_installs_uv_without_touching_the_system_python(tmp_path: Path) -> None:
    checkout, env = _checkout(tmp_path, _PIP_REFUSES)
    refused = subprocess.run(
        ["python3", "-m", "pip", "install", "uv"], env=env, capture_output=True, text=True
    )
    assert "externally-managed-environment" in refused.stderr, "the shim must refuse like PEP 668"

    first = _make(checkout, env, "bootstrap")
    assert first.returncode == 0, first.stderr
    uv = checkout / ".tools" / "uv" / "bin" / "uv"
    version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("uv 0."), version.stdout

    again = _make(checkout, env, "bootstrap")
    assert again.returncode == 0, again.stderr
    assert "installing uv" not in again.stdout, "a second bootstrap reinstalls nothing"


@pytest.mark.timeout(60)
def test_bootstrap_names_what_is_missing_without_venv(tmp_path: Path) -> None:
    checkout, env = _checkout(tmp_path, _NO_VENV)
    result = _make(checkout, env, "bootstrap")
    assert result.returncode != 0
    assert "apt-get install python3-venv" in result.stderr
    assert not (checkout / ".tools" / "uv").exists()
