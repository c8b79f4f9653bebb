"""docker-compose.yml, the Dockerfile and `make images`, checked without a Docker engine.

The distribution's docker-compose (``make test`` installs it: scripts/ensure-compose.sh) validates
the file and resolves it, with the variables the README documents, into the model Docker would
run; the assertions are on that resolved model. `make -n images` renders the image builds.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from ipaddress import ip_address, ip_network
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

# The images, by compose service: each is its package built from the one Dockerfile.
PACKAGES = {
    "router": "codexpool-router",
    "health": "codexpool-health",
    "admin-api": "codexpool-admin-api",
    "ui": "codexpool-ui",
    "codex-sim": "codexpool-sim",
}
ONE_SHOT = {"init": "codex-sim"}
"""One-shot services, and the image they run."""
NO_PROBE = {"otel-collector"}
"""Long-running services whose image has nothing to probe with (said in the compose file)."""
FLUSH_S = 15
"""What stop_grace_period allows beyond the drain timeout, to flush buffered events."""
# What the README tells a user to set; .env has the rest.
DOCUMENTED = {
    "CODEXPOOL_SECRET_KEY": "c2VjcmV0LWtleS1mb3ItdGhlLWNvbXBvc2UtdGVzdHM=",
    "CODEXPOOL_ADMIN_TOKEN": "compose-test-admin-token",
}


def _compose_cli() -> str:
    found = shutil.which("docker-compose")
    assert found, "docker-compose is missing: `make test` installs it (scripts/ensure-compose.sh)"
    return found


def _compose(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    # Only what the README documents, not whatever this shell happens to export.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **variables}
    return subprocess.run(
        [_compose_cli(), "-f", "docker-compose.yml", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@cache
def _resolved(**variables: str) -> dict[str, Any]:
    result = _compose("config", **DOCUMENTED, **variables)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = yaml.safe_load(result.stdout)
    return model


def _services(**variables: str) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _resolved(**variables)["services"]
    return services


def _env_file() -> dict[str, str]:
    lines = (REPO_ROOT / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _version() -> str:
    version: str = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def _seconds(duration: str | int | float) -> float:
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(a + u for a, u in parts) == duration, duration
    return sum(float(amount) * units[unit] for amount, unit in parts)


def test_the_compose_file_is_valid_with_the_documented_variables() -> None:
    result = _compose("config", "-q", **DOCUMENTED)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(DOCUMENTED))
def test_a_missing_secret_is_named(missing: str) -> None:
    given = {name: value for name, value in DOCUMENTED.items() if name != missing}
    result = _compose("config", "-q", **given)
    assert result.returncode != 0
    assert missing in result.stderr


def test_every_codexpool_image_is_its_package_from_the_one_dockerfile() -> None:
    services = _services()
    tag = _env_file()["CODEXPOOL_TAG"]
    built = {name: s for name, s in services.items() if "build" in s}
    assert set(built) == set(PACKAGES) | set(ONE_SHOT)
    for name, service in built.items():
        image = ONE_SHOT.get(name, name)
        build = service["build"]
        assert os.path.realpath(build["context"]) == str(REPO_ROOT)
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
        assert build["args"] == {"PACKAGE": PACKAGES[image]}, name
        assert service["image"] == f"codexpool/{image}:{tag}", name


def test_registry_and_tag_name_every_image() -> None:
    services = _services(CODEXPOOL_REGISTRY="registry.example/acme/", CODEXPOOL_TAG="1.2.3")
    for name in PACKAGES:
        assert services[name]["image"] == f"registry.example/acme/codexpool/{name}:1.2.3"


def test_the_default_tag_is_the_packages_version() -> None:
    version = _version()
    assert _env_file()["CODEXPOOL_TAG"] == version
    members = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["uv"]
    for pattern in members["workspace"]["members"]:
        for member in REPO_ROOT.glob(pattern):
            project = tomllib.loads((member / "pyproject.toml").read_text())["project"]
            assert project["version"] == version, member


def test_make_images_builds_the_images_compose_names() -> None:
    registry, tag = "registry.example/acme/", "1.2.3"
    rendered = subprocess.run(
        ["make", "-s", "-n", "images", f"REGISTRY={registry}", f"TAG={tag}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    builds = {}
    for line in rendered.splitlines():
        words = shlex.split(line)
        if words[:2] == ["docker", "build"]:
            assert words[-1] == ".", line
            package = words[words.index("--build-arg") + 1].removeprefix("PACKAGE=")
            builds[words[words.index("-t") + 1]] = package
    services = _services(CODEXPOOL_REGISTRY=registry, CODEXPOOL_TAG=tag)
    assert builds == {services[name]["image"]: package for name, package in PACKAGES.items()}


def test_make_images_says_when_no_docker_engine_answers() -> None:
    result = subprocess.run(
        ["make", "-s", "images"],
        cwd=REPO_ROOT,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no Docker engine answers" in result.stderr
    assert "docker build" not in result.stdout


def test_the_image_pins_the_workspace_uv() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    (version,) = re.findall(r"^UV_VERSION := (\S+)$", makefile, re.M)
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM ghcr\.io/astral-sh/uv:(\S+) AS uv$", dockerfile, re.M) == [version]


def test_every_long_running_service_restarts_and_is_probed() -> None:
    for name, service in _services().items():
        if name in ONE_SHOT:
            assert service["restart"] == "no", name
            continue
        assert service["restart"] == "unless-stopped", name
        assert ("healthcheck" in service) != (name in NO_PROBE), name


def test_dependents_wait_for_healthy_services() -> None:
    services = _services()
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy", f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency], f"{name} -> {dependency}"
    assert {"redis", "rabbitmq"} <= set(services["router"]["depends_on"])
    assert set(services["ui"]["depends_on"]) == {"redis", "admin-api"}
    assert set(services["init"]["depends_on"]) == {"admin-api", "codex-sim"}


def test_stop_grace_period_covers_the_drain_and_the_flush() -> None:
    for name in PACKAGES.keys() - {"codex-sim"}:
        service = _services()[name]
        drain = float(service["environment"]["CODEXPOOL_DRAIN_TIMEOUT_S"])
        assert _seconds(service["stop_grace_period"]) >= drain + FLUSH_S, name
    # A Codex turn streams for minutes: the router lets it finish.
    assert float(_services()["router"]["environment"]["CODEXPOOL_DRAIN_TIMEOUT_S"]) >= 600


def test_init_seeds_from_the_sims_auth_files() -> None:
    services = _services()
    sim, init = services["codex-sim"], services["init"]
    command = sim["command"]
    auth_dir = command[command.index("--write-auth") + 1]
    init_args = init["command"]
    assert init["entrypoint"] == ["codexpool-sim-seed"]
    assert init_args[init_args.index("--auth-dir") + 1] == auth_dir
    assert init["environment"]["CODEXPOOL_ADMIN_TOKEN"] == DOCUMENTED["CODEXPOOL_ADMIN_TOKEN"]

    def volume(service: dict[str, Any]) -> tuple[str, str]:
        (mount,) = service["volumes"]
        if isinstance(mount, str):
            source, target, *_ = mount.split(":")
            return source, target
        return mount["source"], mount["target"]

    assert volume(sim) == volume(init) == ("sim-auth", auth_dir)


def test_the_sims_volume_is_writable_by_the_images_user() -> None:
    # A named volume starts with the owner of the image's directory it is mounted on.
    _, runtime = (REPO_ROOT / "Dockerfile").read_text().split("\nFROM python:3.11-slim\n", 1)
    auth_dir = _services()["codex-sim"]["volumes"][0]
    target = auth_dir.split(":")[1] if isinstance(auth_dir, str) else auth_dir["target"]
    assert re.search(rf"mkdir {target} && chown 10001:10001 {target}", runtime)
    assert re.search(r"^USER 10001$", runtime, re.M)


def test_compose_runs_the_whole_stack() -> None:
    services = _services()
    expected = {"redis", "rabbitmq", "otel-collector", "jaeger", "prometheus", "alertmanager"}
    expected |= set(PACKAGES)
    assert expected <= set(services)
    assert services["router"]["deploy"]["replicas"] == 2
    assert "--appendonly" in services["redis"]["command"]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts."""
    mounts = {}
    for mount in service["volumes"]:
        if isinstance(mount, str):
            source, target, *_ = mount.split(":")
        else:
            source, target = mount["source"], mount["target"]
        mounts[target] = os.path.relpath(source, REPO_ROOT) if source.startswith("/") else source
    return mounts


def _health_port(service: dict[str, Any]) -> int:
    """The port a service's healthcheck probes: the one it serves /metrics on too."""
    (url,) = [word for word in service["healthcheck"]["test"] if word.startswith("http://")]
    port = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/readyz", url)
    assert port, url
    return int(port[1])


def test_prometheus_scrapes_every_replica_of_every_service() -> None:
    # One DNS name over two router replicas alternated scrapes under one instance (false counter
    # resets): DNS service discovery (type A) makes one target per replica's address.
    services = _services()
    prometheus = services["prometheus"]
    mounts = _mounts(prometheus)
    config_path = prometheus["command"][0].removeprefix("--config.file=")
    config = yaml.safe_load((REPO_ROOT / mounts[config_path]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == PACKAGES.keys() - {"codex-sim"}
    for name, job in jobs.items():
        assert "static_configs" not in job, name
        (discovery,) = job["dns_sd_configs"]
        assert discovery["type"] == "A" and discovery["names"] == [name], name
        assert discovery["port"] == _health_port(services[name]), name
    # The rules, from the one rules file, beside the config where the relative path points.
    (rules,) = config["rule_files"]
    in_container = os.path.join(os.path.dirname(config_path), rules)
    assert mounts[in_container] == "deploy/prometheus/rules.yml"


def test_prometheus_alerts_reach_the_alertmanager_service() -> None:
    services = _services()
    config_path = services["prometheus"]["command"][0].removeprefix("--config.file=")
    config = yaml.safe_load((REPO_ROOT / _mounts(services["prometheus"])[config_path]).read_text())
    ((target,),) = [
        s["targets"] for a in config["alerting"]["alertmanagers"] for s in a["static_configs"]
    ]
    host, port = target.split(":")
    alertmanager = services[host]
    assert alertmanager["image"].startswith("prom/alertmanager:")
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in alertmanager["command"])
    assert _mounts(alertmanager)[flags["config.file"]] == "deploy/alertmanager/alertmanager.yml"
    assert f":{port}/" in " ".join(alertmanager["healthcheck"]["test"])
    assert services["prometheus"]["depends_on"] == {
        "alertmanager": {"condition": "service_healthy"}
    }


def test_compose_admin_api_believes_forwarded_for_from_the_ui_alone() -> None:
    compose = _resolved()
    services = compose["services"]
    trusted = services["admin-api"]["environment"]["FORWARDED_ALLOW_IPS"]
    ui_address = services["ui"]["networks"]["default"]["ipv4_address"]
    assert trusted == ui_address
    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    subnet, dynamic = ip_network(pool["subnet"]), ip_network(pool["ip_range"])
    # Inside the subnet, outside the range other containers draw from, and not its gateway
    # (where connections to published ports come from).
    assert ip_address(ui_address) in subnet and ip_address(ui_address) not in dynamic
    assert ip_address(ui_address) != next(subnet.hosts())


def test_compose_variables_come_from_env_file_or_are_required() -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    for name, operator in re.findall(r"\$\{(\w+)(:[?-][^}]*)?\}", text):
        assert name in _env_file() or operator, f"${{{name}}} is neither in .env nor required"


# -- the README's Docker section --------------------------------------------------------------


def docker_section(readme: str) -> str:
    """The README's Docker section, whatever its heading level, down to the next sibling."""
    heading = re.search(r"^(#{2,3}) Docker\n", readme, re.M)
    assert heading, "README.md has no Docker section"
    level = len(heading[1])
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(readme, heading.end())
    return readme[heading.end() : end.start() if end else len(readme)]


def _exported(line: str) -> tuple[str, str]:
    """Runs an ``export NAME="$(...)"`` line in bash; its variable and the value it got."""
    name = re.fullmatch(r"export (\w+)=.*", line)
    assert name, f"add a check for: {line}"
    value = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f'{line}\nprintf %s "${name[1]}"'],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return name[1], value


def _check_make(words: list[str]) -> None:
    target, *assignments = words[1:]
    assert target in {"images", "push-images"}, words
    variables = dict(a.split("=", 1) for a in assignments)
    assert set(variables) <= {"REGISTRY", "TAG"}, words
    rendered = subprocess.run(
        ["make", "-s", "-n", target, *assignments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    registry, tag = variables.get("REGISTRY", ""), variables.get("TAG", _version())
    images = {f"{registry}codexpool/{name}:{tag}" for name in PACKAGES}
    commands = [shlex.split(line) for line in rendered.splitlines()]
    built = {w[w.index("-t") + 1] for w in commands if w[:2] == ["docker", "build"]}
    assert built == images, rendered
    if target == "push-images":
        pushed = {
            w[-1] for w in map(shlex.split, rendered.splitlines()) if w[:2] == ["docker", "push"]
        }
        assert pushed == images, rendered


def _check_compose(words: list[str], env: dict[str, str]) -> None:
    """Compose commands are rendered: the model `docker compose config` resolves for them."""
    assignments = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        assignments[name] = value
    assert words[:2] == ["docker", "compose"], words
    command, *flags = words[2:]
    variables = {**env, **assignments}
    result = _compose("config", **variables)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    if command == "config":
        assert flags == ["-q"], words
    elif command == "up":
        assert set(flags) <= {"--build", "-d"}, words
        registry, tag = variables.get("CODEXPOOL_REGISTRY", ""), variables.get("CODEXPOOL_TAG")
        for name in PACKAGES:
            assert services[name]["image"] == f"{registry}codexpool/{name}:{tag or _version()}"
    elif command == "logs":
        assert set(flags) <= set(services), words
    elif command == "down":
        assert flags == ["-v"], words
    else:
        pytest.fail(f"add a check for: {shlex.join(words)}")


def check_docker_commands(section: str) -> int:
    """Runs or renders every command of the section's shell blocks; how many it checked."""
    blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", section, re.S)
    env: dict[str, str] = {}
    checked = 0
    for line in "\n".join(blocks).replace("\\\n", " ").splitlines():
        if not line.strip():
            continue
        if line.startswith("export "):
            name, value = _exported(line)
            env[name] = value
        else:
            words = shlex.split(line, comments=True)
            if words[0] == "make":
                _check_make(words)
            else:
                _check_compose(words, env)
        checked += 1
    assert set(env) == set(DOCUMENTED), "the section sets the variables compose requires"
    assert len(base64.b64decode(env["CODEXPOOL_SECRET_KEY"], validate=True)) == 32
    return checked


def test_every_readme_docker_command_is_run_or_rendered() -> None:
    section = docker_section((REPO_ROOT / "README.md").read_text())
    assert check_docker_commands(section) >= 5
