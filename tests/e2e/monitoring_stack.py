"""A real Prometheus and Alertmanager (Debian's, scripts/ensure-prometheus.sh) for e2e tests.

Both run on private ports with their data in a temporary directory. Their configs are the
shipped ones (deploy/prometheus/prometheus.yml and rules.yml, deploy/alertmanager/alertmanager.yml)
with only what differs in a test replaced: the targets (the test's processes instead of compose's
DNS names), the receiver (a webhook the test runs) and the timings.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from codexpool_shared.testing.processes import free_port, stop
from tests.conftest import REPO_ROOT

PROMETHEUS_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES = REPO_ROOT / "deploy" / "prometheus" / "rules.yml"
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

SCRAPE_INTERVAL = "1s"
"""The test's scrape and rule evaluation interval (15 s shipped): the test lasts under a minute."""


def _binary(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: `make test` installs it (scripts/ensure-prometheus.sh)"
    return found


@dataclass
class Webhook:
    """An HTTP receiver Alertmanager posts its notifications to."""

    url: str
    notifications: list[dict[str, Any]] = field(default_factory=list)

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        """Every alert named ``alertname`` received so far, firing or resolved."""
        return [
            alert
            for notification in list(self.notifications)
            for alert in notification["alerts"]
            if alert["labels"].get("alertname") == alertname
        ]


@contextlib.contextmanager
def webhook() -> Iterator[Webhook]:
    """A webhook receiver on a free port, served from a thread until the block ends."""
    received = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.notifications.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads what was received, not an access log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, name="alert-webhook", daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def fast_rules(directory: Path) -> Path:
    """The shipped rules with every ``for`` shortened to one evaluation.

    The ``for`` periods (minutes) are proven by promtool's unit tests (rules.test.yml); here the
    point is that the alert fires on the real services' metrics and reaches Alertmanager within
    a test's time.
    """
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = SCRAPE_INTERVAL
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = SCRAPE_INTERVAL
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


def prometheus_config(
    directory: Path, targets: Mapping[str, list[str]], alertmanager: str
) -> dict[str, Any]:
    """The shipped prometheus.yml, with ``targets`` (job -> host:port) instead of compose's DNS
    discovery, the test's copy of the rules, and the test's Alertmanager."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(targets), f"the test scrapes {sorted(targets)}, compose {sorted(jobs)}"
    config["global"] = {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL}
    for job in config["scrape_configs"]:
        del job["dns_sd_configs"]
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    config["rule_files"] = [str(fast_rules(directory))]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The shipped alertmanager.yml, its receiver posting to ``webhook_url`` with no waiting."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    route = config["route"]
    (receiver,) = [r for r in config["receivers"] if r["name"] == route["receiver"]]
    receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": False}]
    route.update(group_wait="0s", group_interval="1s")
    return config


@dataclass(frozen=True, slots=True)
class Running:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def _run(name: str, argv: list[str], port: int, directory: Path) -> Iterator[Running]:
    log_path = directory / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    running = Running(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_ready(running)
        yield running
    finally:
        stop(process)


def _wait_ready(running: Running, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                raise RuntimeError(f"exited with {running.process.returncode}:\n{running.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(running.url + "/-/ready").status_code == 200:
                    return
            time.sleep(0.05)
    raise RuntimeError(f"{running.url} not ready after {timeout_s} s:\n{running.log()[-4000:]}")


@contextlib.contextmanager
def alertmanager(directory: Path, webhook_url: str) -> Iterator[Running]:
    """Alertmanager on a free port, alone (no cluster port), delivering to ``webhook_url``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(webhook_url)))
    port = free_port()
    argv = [
        _binary("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with _run("alertmanager", argv, port, directory) as running:
        yield running


@contextlib.contextmanager
def prometheus(
    directory: Path, targets: Mapping[str, list[str]], alertmanager_url: str
) -> Iterator[Running]:
    """Prometheus on a free port scraping ``targets``, evaluating the rules, alerting to
    ``alertmanager_url``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    address = alertmanager_url.removeprefix("http://")
    config.write_text(yaml.safe_dump(prometheus_config(directory, targets, address)))
    port = free_port()
    argv = [
        _binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with _run("prometheus", argv, port, directory) as running:
        yield running
