"""The Grafana dashboard, offline: its structure, and every query parsed by Prometheus's parser.

That each query returns series from the real services is tests/e2e/test_monitoring.py's part;
here promtool parses them (as recording rules), so a typo fails in the unit tier already.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "codexpool.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _dashboard()["templating"]["list"]}


def test_every_panel_queries_the_chosen_prometheus() -> None:
    assert _variables()["datasource"]["type"] == "datasource"
    assert _variables()["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in _dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_every_variable_a_query_uses_is_defined_and_every_one_is_used() -> None:
    variables = _variables()
    exprs = [t["expr"] for p in _panels() for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\$\{?(\w+)", e)} - {"__rate_interval"}
    assert used == set(variables) - {"datasource"}
    for name in used:
        assert re.fullmatch(r"label_values\(\w+, *\w+\)", variables[name]["definition"]), name
        # "All" matches every value, including ones that appear after the page loaded.
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*", name


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs it (scripts/ensure-prometheus.sh)"
    rules = []
    targets = [t for p in _panels() for t in p["targets"]]
    for n, target in enumerate(targets):
        expr = target["expr"].replace("$__rate_interval", "1m")
        expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
