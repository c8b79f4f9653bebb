"""Every Lua script names hash fields only through their Python definitions.

The scripts are the ``.lua`` files of the repository and the Python strings that call
``redis.call``. A field name a script spells itself, a placeholder naming a field Python does not
define, or a placeholder left after rendering fails here rather than in production.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
from collections.abc import Iterator

import pytest

import codexpool_shared
from codexpool_shared.activity import HealthFields
from codexpool_shared.store.live import LiveFields
from codexpool_shared.store.scripts import PLACEHOLDER, LayoutError, LuaScript, render
from codexpool_shared.testing.source import parse
from tests.conftest import REPO_ROOT


def _layouts() -> tuple[type, ...]:
    """Every class of ``codexpool_shared`` that names the fields of a hash (``*Fields``)."""
    found: dict[str, type] = {}
    for module in pkgutil.walk_packages(codexpool_shared.__path__, "codexpool_shared."):
        for name, value in vars(importlib.import_module(module.name)).items():
            if name.endswith("Fields") and isinstance(value, type):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return tuple(found.values())


LAYOUTS = _layouts()
_PRODUCT = ("shared/src/", "services/", "tools/", "scripts/")
_LITERAL = re.compile(r"'([^'\\\n]*)'|\"([^\"\\\n]*)\"")
_FIELD_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\.(\w+)\s*\}\}")
_FRAGMENT = re.compile(r"\{\{>\s*(\w+)\s*\}\}")
# Which arguments of a hash command are field names (0 = the command, 1 = the key).
_FIELD_ARGS = {
    "HGET": slice(2, None),
    "HMGET": slice(2, None),
    "HDEL": slice(2, None),
    "HEXISTS": slice(2, 3),
    "HINCRBY": slice(2, 3),
    "HINCRBYFLOAT": slice(2, 3),
    "HSETNX": slice(2, 3),
    "HSET": slice(2, None, 2),
    "HMSET": slice(2, None, 2),
}


def _names() -> dict[str, str]:
    """Every field name and prefix Python defines -> where."""
    return {
        value: f"{layout.__name__}.{attr}"
        for layout in LAYOUTS
        for attr, value in vars(layout).items()
        if attr.isupper() and isinstance(value, str)
    }


def _tracked(*patterns: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [name for name in out if (REPO_ROOT / name).is_file()]


def _scripts() -> Iterator[tuple[str, str]]:
    """(where, template) of every Lua script in the product."""
    for name in _tracked("*.lua"):
        yield name, (REPO_ROOT / name).read_text()
    for name in _tracked("*.py"):
        if not name.startswith(_PRODUCT):
            continue
        tree = parse(REPO_ROOT / name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if "redis.call(" in node.value:
                    yield f"{name}:{node.lineno}", node.value


SCRIPTS = dict(_scripts())


def _calls(source: str) -> Iterator[list[str]]:
    """The argument lists (as source text) of every ``redis.call(...)``."""
    for match in re.finditer(r"redis\.call\(", source):
        depth, quote, args, start = 1, "", [], match.end()
        i = start
        while depth:
            ch = source[i]
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch in "({":
                depth += 1
            elif ch in ")}":
                depth -= 1
            elif ch == "," and depth == 1:
                args.append(source[start:i].strip())
                start = i + 1
            i += 1
        args.append(source[start : i - 1].strip())
        yield args


def test_the_scripts_and_field_classes_are_found() -> None:
    names = " ".join(SCRIPTS)
    for expected in ("store/select.lua", "store/circuit.lua", "lua/apply.lua", "store/live.py"):
        assert expected in names
    classes = {layout.__name__ for layout in LAYOUTS}
    assert {"LiveFields", "PoolFields", "ProviderFields", "HealthFields", "Fields"} <= classes
    assert len(classes) == len(LAYOUTS), "two field classes share a name"


@pytest.mark.parametrize("where", sorted(SCRIPTS))
def test_hash_commands_name_fields_by_placeholder(where: str) -> None:
    spelled = []
    for args in _calls(SCRIPTS[where]):
        command = args[0].strip("'\"").upper()
        if command not in _FIELD_ARGS:
            continue
        for arg in args[_FIELD_ARGS[command]]:
            literal = _LITERAL.fullmatch(arg)
            if literal and not _FIELD_PLACEHOLDER.fullmatch(literal[1] or literal[2] or ""):
                spelled.append(f"{command} {arg}")
    assert not spelled, f"{where} spells hash fields: {spelled}"


@pytest.mark.parametrize("where", sorted(SCRIPTS))
def test_no_literal_is_a_field_python_defines(where: str) -> None:
    names = _names()
    prefixes = {value: owner for value, owner in names.items() if value.endswith(":")}
    found = []
    for match in _LITERAL.finditer(SCRIPTS[where]):
        literal = match[1] if match[1] is not None else match[2]
        if literal in names:
            found.append(f"{literal!r} (use {{{{{names[literal]}}}}})")
        found += [
            f"{literal!r} (use {{{{{p}}}}})" for v, p in prefixes.items() if literal.startswith(v)
        ]
    assert not found, f"{where} spells field names: {found}"


@pytest.mark.parametrize("where", sorted(SCRIPTS))
def test_placeholders_name_python_fields_and_fragments(where: str) -> None:
    template = SCRIPTS[where]
    by_name = {layout.__name__: layout for layout in LAYOUTS}
    for layout, attr in _FIELD_PLACEHOLDER.findall(template):
        assert layout in by_name, f"{where}: {layout} is not a field class"
        assert isinstance(getattr(by_name[layout], attr, None), str), f"{where}: {layout}.{attr}"
    rendered = render(template, *LAYOUTS)
    assert not PLACEHOLDER.search(rendered), f"{where}: a placeholder is left"
    for fragment in _FRAGMENT.findall(template):
        assert f"{fragment}.lua" in " ".join(SCRIPTS)


def test_the_services_render_their_scripts_from_the_python_names() -> None:
    from codexpool_health.store import _SCRIPT as apply_script
    from codexpool_shared.store.selection import _SCRIPT as select_script

    for script in (apply_script, select_script):
        assert not PLACEHOLDER.search(script.source)
    assert f"'{LiveFields.COOLDOWN_UNTIL}'" in select_script.source
    assert f"'{HealthFields.SCORE}'" in select_script.source
    assert f"'{HealthFields.SCORE}'" in apply_script.source


def test_a_field_python_does_not_define_fails_the_render() -> None:
    with pytest.raises(LayoutError, match="LiveFields has no field RENAMED"):
        render("redis.call('HGET', KEYS[1], '{{LiveFields.RENAMED}}')", LiveFields)
    with pytest.raises(LayoutError, match="PoolFields"):
        render("redis.call('HGET', KEYS[1], '{{PoolFields.VERSION}}')", LiveFields)
    with pytest.raises(LayoutError, match="fragment"):
        render("{{> nowhere}}", LiveFields)


def test_render_fills_fragments_and_fields() -> None:
    rendered = render("{{> circuit}}\nreturn '{{LiveFields.FAILURES}}'", LiveFields)
    assert "local function open_circuit" in rendered
    assert f"'{LiveFields.CIRCUIT_OPENS}'" in rendered
    assert rendered.endswith(f"return '{LiveFields.FAILURES}'")
    assert LuaScript.of(rendered).sha == LuaScript.of(rendered).sha != LuaScript.of("x").sha
