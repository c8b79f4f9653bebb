"""The admin API is layered one way: the HTTP layer (``api/``) imports the domain, never back.

``app.py`` is the one exception: the app factory mounts the routes, so it sits above ``api/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import codexpool_admin_api
from codexpool_shared.testing.source import parse

PACKAGE = "codexpool_admin_api"
API = f"{PACKAGE}.api"
ABOVE_API = frozenset({f"{PACKAGE}.app"})
"""Modules allowed to import ``api/``: the app factory, which includes its routers."""


def _modules() -> dict[str, Path]:
    root = Path(codexpool_admin_api.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((PACKAGE, *parts))] = path
    return modules


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # ``from codexpool_admin_api import api`` names the package in the alias.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _is_api(name: str) -> bool:
    return name == API or name.startswith(f"{API}.")


def test_no_module_outside_api_imports_api() -> None:
    modules = _modules()
    assert f"{PACKAGE}.pool_activity" in modules and f"{API}.routes.activity" in modules
    upward = {
        module: sorted(name for name in _imports(module, path) if _is_api(name))
        for module, path in modules.items()
        if not _is_api(module) and module not in ABOVE_API
    }
    assert {module: names for module, names in upward.items() if names} == {}


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "domain.py"
    source.write_text(
        "import codexpool_admin_api.api.errors\n"
        "from codexpool_admin_api.api.models import X\n"
        "from codexpool_admin_api import api\n"
        "from .api import routes\n"
        "from . import api as http\n"
    )
    found = {name for name in _imports(f"{PACKAGE}.domain", source) if _is_api(name)}
    assert found == {f"{API}.errors", f"{API}.models", f"{API}.models.X", API, f"{API}.routes"}
