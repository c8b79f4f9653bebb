"""Every image's environment, built as the Dockerfile builds it, imports and serves.

The workspace venv holds every package's dependencies at once; an image holds one package's.
So each environment here is built by replaying the Dockerfile's build stage
(tests/integration/dockerfile.py: the same COPY sources, the same ``uv sync`` commands, nothing
else installed), then started from its own console script against the real Redis and RabbitMQ,
as the image's entrypoint starts it. A runtime dependency a package forgot to declare fails here.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from codexpool_shared.testing.infra import InfraUrls
from codexpool_shared.testing.keepalive import idle_until_closed
from codexpool_shared.testing.processes import free_port, wait_ready
from tests.conftest import REPO_ROOT
from tests.integration.dockerfile import build_runtime, minimal_env

PACKAGES = {
    "codexpool-router": "codexpool_router",
    "codexpool-health": "codexpool_health",
    "codexpool-admin-api": "codexpool_admin_api",
    "codexpool-ui": "codexpool_ui",
    "codexpool-sim": "codexpool_sim",
}
ADMIN_TOKEN = "images-test-admin-token-0123456789"
SECRET_KEY = base64.b64encode(os.urandom(32)).decode()

# Imports every module of the named packages and requires each to come from the environment
# itself: with -I neither the working directory, PYTHONPATH nor user site-packages count, so a
# module found in the repository's sources would mean the environment is not self-contained.
_IMPORT_ALL = """
import importlib, pkgutil, sys
prefix = sys.prefix
failed = []
for top in sys.argv[1:]:
    package = importlib.import_module(top)
    names = [top] + [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")]
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            failed.append(f"{name}: {exc!r}")
            continue
        if not (getattr(module, "__file__", None) or "").startswith(prefix):
            failed.append(f"{name}: loaded from {module.__file__}, outside {prefix}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def _uv() -> str:
    # `uv run` names itself in UV; `make` puts the pinned uv on PATH.
    found = os.environ.get("UV") or shutil.which("uv")
    assert found, "no uv executable: run the tests through `make test` or `uv run`"
    return found


@dataclass(frozen=True, slots=True)
class Runtime:
    venv: Path
    imports: subprocess.CompletedProcess[str]
    """The import smoke's result (_IMPORT_ALL), run right after the build."""

    def to_json(self) -> dict[str, object]:
        result = self.imports
        return {
            "venv": str(self.venv),
            "imports": [result.returncode, result.stdout, result.stderr],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Runtime:
        code, out, err = data["imports"]
        return cls(Path(data["venv"]), subprocess.CompletedProcess([], code, out, err))


def _import_all(venv: Path, package: str) -> subprocess.CompletedProcess[str]:
    modules = [PACKAGES[package]]
    if any(venv.glob("lib/python*/site-packages/codexpool_shared")):
        modules.append("codexpool_shared")
    return subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", _IMPORT_ALL, *modules],
        cwd=venv.parent,
        env=minimal_env(venv),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _build_all(scratch: Path) -> dict[str, Runtime]:
    uv = _uv()
    cache = subprocess.run(
        [uv, "cache", "dir"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    python = getattr(sys, "_base_executable", sys.executable)

    def build(package: str) -> Runtime:
        root = scratch / package
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        venv = build_runtime(root, {"PACKAGE": package}, uv=uv, uv_cache=cache, python=python)
        return Runtime(venv, _import_all(venv, package))

    with ThreadPoolExecutor(len(PACKAGES)) as pool:
        return dict(zip(PACKAGES, pool.map(build, PACKAGES), strict=True))


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, Runtime]:
    """Each package's environment, built the Dockerfile's way and import-checked, all at once.

    Built once per run: pytest-xdist workers share the directory above their own temporary
    directories, and the first worker builds while the others wait on the lock. pytest removes
    the directory with old runs' (the files are hard links into uv's cache, so it is small).
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base
    scratch, done = shared / "images", shared / "images.json"
    with (shared / "images.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            built = _build_all(scratch)
            done.write_text(json.dumps({p: r.to_json() for p, r in built.items()}))
        return {p: Runtime.from_json(r) for p, r in json.loads(done.read_text()).items()}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports_from_the_environment_alone(
    package: str, runtimes: dict[str, Runtime]
) -> None:
    result = runtimes[package].imports
    assert result.returncode == 0, f"{package}:\n{result.stdout}{result.stderr}"


def _name(requirement: str) -> str:
    """A distribution's normalized name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", requirement).lower()


def _installed(venv: Path) -> set[str]:
    listing = (
        "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'])"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", listing],
        env=minimal_env(venv),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return {_name(line) for line in result.stdout.split()}


def _locked_runtime(package: str) -> set[str]:
    """What uv.lock resolves for ``package`` without the dev group, for any Python."""
    exported = subprocess.run(
        [_uv(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-header", "--no-annotate",
         "--package", package],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    names = set()
    for line in exported.splitlines():
        if member := re.fullmatch(r"-e \./(\S+)", line):
            project = tomllib.loads((REPO_ROOT / member[1] / "pyproject.toml").read_text())
            names.add(_name(project["project"]["name"]))
        elif pinned := re.match(r"([A-Za-z0-9._-]+)(\[[^]]*\])?==", line):
            names.add(_name(pinned[1]))
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_the_environment_holds_no_dev_dependency(
    package: str, runtimes: dict[str, Runtime]
) -> None:
    # The dev group (pytest, jsonschema, matplotlib for the benchmarks, ...) stays out of images.
    # One way only: the export keeps entries whose markers exclude this Python (async-timeout).
    installed, locked = _installed(runtimes[package].venv), _locked_runtime(package)
    assert installed <= locked, f"beyond the lock: {sorted(installed - locked)}"
    dev = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    dev_only = {_name(re.split(r"[\[<>=~; ]", r, maxsplit=1)[0]) for r in dev} - locked
    assert {"matplotlib", "jsonschema", "pytest"} <= dev_only


@contextlib.contextmanager
def _serving(venv: Path, package: str, env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    """The image's entrypoint (the package's console script), ready; SIGTERM at the end."""
    port = free_port()
    command = [str(venv / "bin" / package), "--host", "127.0.0.1", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=minimal_env(venv, **env), cwd=log.parent, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(f"{url}/readyz", timeout_s=45, process=process)
        except RuntimeError as exc:
            raise AssertionError(f"{package}: {exc}\n{log.read_text(errors='replace')}") from None
        yield url
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        # uvicorn ends a graceful shutdown by raising the signal it caught again.
        assert code in (0, -signal.SIGTERM), f"{package} exited with {code}:\n" + log.read_text(
            errors="replace"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _service_env(infra: InfraUrls, namespace: str) -> dict[str, str]:
    return {
        "REDIS_URL": infra.redis_url,
        "AMQP_URL": infra.amqp_url,
        "CODEXPOOL_NAMESPACE": namespace,
        "CODEXPOOL_SECRET_KEY": SECRET_KEY,
        "CODEXPOOL_ADMIN_TOKEN": ADMIN_TOKEN,
        "CODEXPOOL_DRAIN_TIMEOUT_S": "10",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
    }


@pytest.mark.parametrize("package", PACKAGES)
@pytest.mark.timeout(150)
def test_the_entrypoint_serves_and_stops_on_sigterm(
    package: str, runtimes: dict[str, Runtime], infra: InfraUrls, namespace: str, tmp_path: Path
) -> None:
    env = _service_env(infra, namespace)
    with contextlib.ExitStack() as stack:
        if package == "codexpool-ui":
            # The UI is ready when the admin API answers.
            admin = runtimes["codexpool-admin-api"].venv
            env["CODEXPOOL_ADMIN_API_URL"] = stack.enter_context(
                _serving(admin, "codexpool-admin-api", env, tmp_path / "admin-api.log")
            )
        served = {**env, "CODEXPOOL_HTTP_KEEPALIVE_S": "1"}
        url = stack.enter_context(
            _serving(runtimes[package].venv, package, served, tmp_path / "service.log")
        )
        if package != "codexpool-sim":  # the services' shared `serve`, not the sim's own
            # Closed well before uvicorn's own 5 s: the entrypoint reads the setting.
            assert idle_until_closed(int(url.rsplit(":", 1)[1]), deadline_s=4) >= 0.9


def _compose_command(service: str, data: Path) -> list[str]:
    """A compose service's entrypoint override and command, its /data volume moved to ``data``."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    spec = compose["services"][service]
    return [p.replace("/data", str(data)) for p in (*spec.get("entrypoint", []), *spec["command"])]


@pytest.mark.timeout(150)
def test_init_seeds_the_demo_pool_and_is_idempotent(
    runtimes: dict[str, Runtime], infra: InfraUrls, namespace: str, tmp_path: Path
) -> None:
    """codex-sim writes its auth files and init registers them, as compose runs the two: a
    second run keeps everything; after codex-sim restarts (new accounts) a third replaces them."""
    env = _service_env(infra, namespace)
    sim, admin = runtimes["codexpool-sim"].venv, runtimes["codexpool-admin-api"].venv
    data = tmp_path / "data"
    data.mkdir()
    sim_args = _compose_command("codex-sim", data)
    executable, *init_args = _compose_command("init", data)
    assert executable == "codexpool-sim-seed", "init runs the sim image's seed script"

    def init(admin_url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(sim / "bin" / executable), *init_args],
            env=minimal_env(
                sim, CODEXPOOL_ADMIN_API_URL=admin_url, CODEXPOOL_ADMIN_TOKEN=ADMIN_TOKEN
            ),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    with _serving(admin, "codexpool-admin-api", env, tmp_path / "admin-api.log") as admin_url:
        with _serving(sim, "codexpool-sim", {}, tmp_path / "sim.log", *sim_args):
            first, second = init(admin_url), init(admin_url)
        with _serving(sim, "codexpool-sim", {}, tmp_path / "sim-restarted.log", *sim_args):
            third = init(admin_url)
    for run in (first, second, third):
        assert run.returncode == 0, run.stderr
    keys = [re.findall(r"agent key \(shown once.*\): (cpk_\S+)", r.stdout) for r in (first, third)]
    assert keys[0] and keys[1] and keys[0] != keys[1], (first.stdout, third.stdout)
    assert "existed" in second.stdout and "cpk_" not in second.stdout
