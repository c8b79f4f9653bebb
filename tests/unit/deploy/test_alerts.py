"""The alert rules, Prometheus's and Alertmanager's configs, checked by the tools that load them.

promtool and amtool are Debian's (``make test`` installs them: scripts/ensure-prometheus.sh).
promtool runs the unit tests of deploy/prometheus/rules.test.yml: every alert fires on its
synthetic series and stays silent on the others.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO_ROOT

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULES_TESTS = PROMETHEUS / "rules.test.yml"
ALERTMANAGER = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOKS = REPO_ROOT / "deploy" / "README.md"
SEVERITIES = {"critical", "warning"}


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: `make test` installs it (scripts/ensure-prometheus.sh)"
    return found


def _run(*args: str | Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@cache
def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_promtool_checks_the_rules() -> None:
    result = _run(_tool("promtool"), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    result = _run(_tool("promtool"), "test", "rules", RULES_TESTS.name, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(RULES_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    assert fired == set(_alerts()), "an alert without a test where it fires"
    assert silent == set(_alerts()), "an alert without a test where it stays silent"


def test_promtool_unit_tests_fail_when_an_alert_changes(tmp_path: Path) -> None:
    # The unit tests pin the alerts: a threshold moved makes them fail (so they test something).
    broken = RULES.read_text().replace("> 0.05", "> 0.5")
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULES_TESTS, tmp_path / RULES_TESTS.name)
    result = _run(_tool("promtool"), "test", "rules", RULES_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "CodexPoolClientErrorRatioHigh" in result.stdout + result.stderr


def test_every_alert_has_a_severity_and_a_runbook_paragraph() -> None:
    readme = RUNBOOKS.read_text()
    headings = {_anchor(h): h for h in re.findall(r"^### (.+)$", readme, re.M)}
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == RUNBOOKS.relative_to(REPO_ROOT).as_posix(), name
        assert headings.get(anchor) == name, f"{name}: no runbook section #{anchor}"
        section = readme.split(f"### {name}\n", 1)[1].split("\n### ", 1)[0]
        assert "**What it means.**" in section and "**What to do.**" in section, name


def test_promtool_checks_the_compose_prometheus_config() -> None:
    # Also loads the rule files it names (rules.yml beside it).
    result = _run(_tool("promtool"), "check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_amtool_checks_the_alertmanager_config() -> None:
    result = _run(_tool("amtool"), "check-config", ALERTMANAGER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
