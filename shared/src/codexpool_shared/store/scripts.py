"""Lua scripts rendered from the Python definitions of the hash fields they touch.

Every Redis hash has one Python class naming its fields (``LiveFields`` in ``store/live.py``,
``PoolFields``, ``ProviderFields``, ``HealthFields`` and ``Fields`` in ``activity.py``). A script
never spells a field itself: it writes ``'{{LiveFields.COOLDOWN_UNTIL}}'`` and is rendered once,
at import, with the classes it names; Lua both scripts need (the circuit backoff) is a fragment
beside this module, included as ``{{> circuit}}``. An unknown class or attribute raises
:class:`LayoutError` at import, and ``tests/unit/shared/test_script_layout.py`` fails when a
script spells a field name literally, so a field renamed in Python cannot leave a script behind.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

_FIELD = re.compile(r"\{\{\s*(\w+)\.(\w+)\s*\}\}")
_FRAGMENT = re.compile(r"\{\{>\s*(\w+)\s*\}\}")
PLACEHOLDER = re.compile(r"\{\{\s*(?:>\s*\w+|\w+\.\w+)\s*\}\}")
"""Anything of the placeholder forms; none may be left in a rendered script."""


class LayoutError(Exception):
    """A script names a field class, a field or a fragment that does not exist."""


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A rendered script and the SHA-1 that ``EVALSHA`` calls it by."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        """The script ``source`` and its SHA-1."""
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


def _fragment(name: str) -> str:
    path = resources.files("codexpool_shared.store").joinpath(f"{name}.lua")
    if not path.is_file():
        raise LayoutError(f"no Lua fragment {name!r} in codexpool_shared.store")
    return path.read_text()


def render(template: str, *layouts: type) -> str:
    """Fill ``template``'s fragments, then its ``{{Class.NAME}}`` fields from ``layouts``.

    Raises:
        LayoutError: A fragment, class or field the template names is unknown, or a placeholder
            is left (a fragment including another).
    """
    by_name = {layout.__name__: layout for layout in layouts}

    def field(match: re.Match[str]) -> str:
        layout, name = match[1], match[2]
        if layout not in by_name:
            raise LayoutError(f"the script names {layout}, which it was not rendered with")
        value = getattr(by_name[layout], name, None)
        if not isinstance(value, str):
            raise LayoutError(f"{layout} has no field {name}")
        return value

    text = _FIELD.sub(field, _FRAGMENT.sub(lambda m: _fragment(m[1]), template))
    left = PLACEHOLDER.search(text)
    if left:
        raise LayoutError(f"placeholder {left[0]} left after rendering")
    return text


def load(package: str, name: str, *layouts: type) -> LuaScript:
    """Render the Lua file ``name`` of ``package`` (see :func:`render`)."""
    return LuaScript.of(render(resources.files(package).joinpath(name).read_text(), *layouts))
