"""The build stage of the repository's Dockerfile, run on this machine without Docker.

``build_runtime`` replays the stage's instructions in a scratch directory that stands for the
image's filesystem: the files its ``RUN --mount=type=bind`` steps see, what its ``COPY`` steps
copy (less what .dockerignore leaves out), its ``ENV`` and ``ARG`` values, and its ``RUN``
commands in ``/bin/sh``, with the machine's uv cache as the cache mount (``HOW_NOT_WHAT`` says
the two settings it changes, and why) and this machine's uv standing in for the image's, which
must be the same version. Then, like the runtime stage, only the environment is kept. An
instruction this module does not know fails the test: teach it here rather than let the test
build something the image does not.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
# How uv installs, not what: linking files from the cache instead of copying them, and leaving
# bytecode to be compiled at first import, make the same environment in a tenth of the time.
HOW_NOT_WHAT = {"UV_LINK_MODE": "hardlink", "UV_COMPILE_BYTECODE": "0"}
_NETWORK = {"SSL_CERT_FILE", "SSL_CERT_DIR", "UV_NATIVE_TLS", "UV_SYSTEM_CERTS", "UV_INDEX_URL"}
_NETWORK |= {"UV_DEFAULT_INDEX", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_INSECURE_HOST"}
VENV = "/app/.venv"
"""Where the build stage leaves the environment the runtime stage copies."""


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, arguments.strip()))
    return stages


def stage(name: str) -> Stage:
    """The Dockerfile's stage called ``name``."""
    for candidate in parse(DOCKERFILE.read_text()):
        if candidate.name == name:
            return candidate
    raise AssertionError(f"the Dockerfile has no stage {name!r}")


def _ignored(relative: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        body = pattern.removeprefix("**/")
        parts = relative.split("/")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, body) for part in parts):
                return True
        elif fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(parts[0], pattern):
            return True
    return False


def _dockerignore() -> list[str]:
    path = REPO_ROOT / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _copy_from_context(source: str, target: Path) -> None:
    origin = REPO_ROOT / source
    assert origin.exists(), f"COPY {source}: not in the repository"
    patterns = _dockerignore()
    if origin.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)
        return

    def ignore(directory: str, names: list[str]) -> set[str]:
        base = Path(directory).relative_to(REPO_ROOT)
        return {n for n in names if _ignored(str(base / n), patterns)}

    shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)


def _substitute(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), text).strip(
        '"'
    )


@dataclass
class _Replay:
    root: Path
    env: dict[str, str]
    build_args: dict[str, str]
    workdir: str = "/"
    log: list[str] = field(default_factory=list)

    def path(self, image_path: str) -> Path:
        absolute = image_path if image_path.startswith("/") else f"{self.workdir}/{image_path}"
        return self.root / absolute.lstrip("/")

    def set_workdir(self, arguments: str) -> None:
        self.workdir = arguments
        self.path(".").mkdir(parents=True, exist_ok=True)

    def arg(self, arguments: str) -> None:
        name, _, default = arguments.partition("=")
        value = self.build_args.get(name, default)
        assert value, f"ARG {name} has no value: pass it as a build argument"
        self.env[name] = value

    def set_env(self, arguments: str) -> None:
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            self.env[name] = _substitute(value, self.env)
        self.env.update(HOW_NOT_WHAT)

    def copy(self, arguments: str) -> None:
        words = shlex.split(arguments)
        if words[0].startswith("--from="):
            # Only the uv binary comes from another image; this machine's uv stands in for it.
            assert words[1:] == ["/uv", "/bin/uv"], f"COPY {arguments}: teach the test"
            image = stage(words[0].removeprefix("--from=")).base
            pinned = image.rpartition(":")[2]
            found = subprocess.run(
                ["uv", "--version"], env=self.env, capture_output=True, text=True, check=True
            ).stdout.split()[1]
            assert found == pinned, f"the image has uv {pinned} ({image}), this machine {found}"
            return
        *sources, target = words
        for source in sources:
            destination = self.path(target)
            if len(sources) > 1 or target.endswith("/"):
                destination = destination / Path(source).name
            _copy_from_context(source, destination)

    def run(self, arguments: str) -> None:
        mounts = []
        command = arguments
        while match := re.match(r"\s*--mount=(\S+)\s+", command):
            mounts.append(dict(p.split("=", 1) for p in match[1].split(",")))
            command = command[match.end() :]
        command = command.strip()
        bound = []
        for mount in mounts:
            if mount["type"] == "bind":
                target = self.path(mount["target"])
                if not target.exists():
                    _copy_from_context(mount["source"], target)
                    bound.append(target)
            else:
                # The cache mount is uv's cache: this machine's (UV_CACHE_DIR) is used instead.
                assert mount["type"] == "cache", f"RUN --mount={mount}: teach the test"
        self.log.append(f"$ {command}")
        result = subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=self.path("."),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        self.log.append(result.stdout + result.stderr)
        assert result.returncode == 0, "\n".join(self.log)
        for target in bound:
            target.unlink()


def build_runtime(
    root: Path, build_args: dict[str, str], *, uv: str, uv_cache: str, python: str
) -> Path:
    """Replay the ``build`` stage under ``root``; return the environment, as the image has it.

    Args:
        root: An empty directory standing for the image's ``/``.
        build_args: ``--build-arg`` values (PACKAGE).
        uv: The uv executable that stands in for the image's.
        uv_cache: The uv cache directory (the cache mount).
        python: The Python 3.11 interpreter that stands in for the base image's.
    """
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "uv").symlink_to(uv)
    # How this machine reaches the package index, as docker build's network would.
    network = {
        name: value
        for name, value in os.environ.items()
        if name in _NETWORK or name.upper().endswith("_PROXY")
    }
    replay = _Replay(
        root,
        {
            **network,
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(root / "root"),
            "UV_CACHE_DIR": uv_cache,
            "UV_PYTHON": python,
            "UV_PYTHON_PREFERENCE": "only-system",
        },
        build_args,
    )
    for instruction in stage("build").instructions:
        handler = {
            "ARG": replay.arg,
            "ENV": replay.set_env,
            "COPY": replay.copy,
            "RUN": replay.run,
            "WORKDIR": replay.set_workdir,
        }.get(instruction.keyword)
        assert handler, f"{instruction.keyword} in the build stage: teach tests/integration"
        handler(instruction.arguments)
    venv = replay.path(VENV)
    assert (venv / "bin" / "python").exists(), "\n".join(replay.log)
    # The runtime stage copies the environment alone.
    for entry in venv.parent.iterdir():
        if entry != venv:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return venv


def minimal_env(venv: Path, **variables: str) -> dict[str, str]:
    """What a container of the image starts with (its ENV), plus ``variables``."""
    env = {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for instruction in stage_after("build").instructions:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                name, _, value = pair.partition("=")
                if name != "PATH":
                    env[name] = value
    return {**env, **variables}


def stage_after(name: str) -> Stage:
    """The stage that follows ``name`` (the runtime stage follows ``build``)."""
    stages = parse(DOCKERFILE.read_text())
    names = [s.name for s in stages]
    return stages[names.index(name) + 1]
