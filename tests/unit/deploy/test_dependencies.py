"""Every workspace package declares the distributions it imports.

The workspace venv holds every package's dependencies at once, so an import that only another
package pulls in works here and fails in that package's image (uv's docs call this the
workspace's dependency leak). tests/integration/test_images.py builds each image's environment
and starts it; this test names the missing declaration directly, for every module-level import.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import distributions
from pathlib import Path

import pytest

from codexpool_shared.testing.source import parse
from tests.conftest import REPO_ROOT

PACKAGES = ["shared", "services/router", "services/health", "services/admin-api", "services/ui"]
PACKAGES += ["tools/codex-sim"]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalize(re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0])


@cache
def _workspace_modules() -> dict[str, str]:
    """Import name -> distribution, for the workspace's own packages (installed editable)."""
    owners = {}
    for directory in PACKAGES:
        project = tomllib.loads((REPO_ROOT / directory / "pyproject.toml").read_text())
        (source,) = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        owners[Path(source).name] = _normalize(project["project"]["name"])
    return owners


@cache
def _file_owners() -> dict[Path, str]:
    owners = {}
    for dist in distributions():
        for file in dist.files or ():
            owners[Path(str(dist.locate_file(file))).resolve()] = _normalize(dist.metadata["Name"])
    return owners


def _owner(module: str) -> str | None:
    """The distribution that installs ``module``, or None for the standard library."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names:
        return None
    if top in _workspace_modules():
        return _workspace_modules()[top]
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not importable here"
    owner = _file_owners().get(Path(spec.origin).resolve())
    assert owner, f"no installed distribution owns {spec.origin} ({module})"
    return owner


def _is_module(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return False
    return spec is not None and spec.origin not in (None, "namespace")


def _imported_modules(tree: ast.Module) -> set[str]:
    """Modules imported at module level (outside ``if TYPE_CHECKING``): what runs at import."""
    modules = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from opentelemetry import trace``: the owner is trace's, not the namespace's.
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                modules.add(candidate if _is_module(candidate) else node.module)
    return modules


@pytest.mark.parametrize("directory", PACKAGES)
def test_a_package_declares_what_it_imports(directory: str) -> None:
    project = tomllib.loads((REPO_ROOT / directory / "pyproject.toml").read_text())["project"]
    own = _normalize(project["name"])
    declared = {_requirement_name(r) for r in project.get("dependencies", [])}
    undeclared: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / directory / "src").rglob("*.py")):
        for module in _imported_modules(parse(path)):
            owner = _owner(module)
            if owner is not None and owner != own and owner not in declared:
                undeclared.setdefault(owner, set()).add(f"{path.relative_to(REPO_ROOT)}: {module}")
    assert not undeclared, f"{project['name']} imports, without declaring them: " + "; ".join(
        f"{owner} ({', '.join(sorted(where)[:2])})" for owner, where in sorted(undeclared.items())
    )
