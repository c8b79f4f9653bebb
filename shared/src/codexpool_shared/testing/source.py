"""Reading the repository's Python source as syntax trees, for tests that check its layout."""

from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse(path: Path) -> ast.Module:
    """The syntax tree of the Python file at ``path``, built with the cyclic collector paused.

    On CPython 3.11 a parse nested in another one's tree building (a finalizer the collector runs
    there, such as asyncio logging "Future exception was never retrieved" with a traceback, which
    3.11 formats with ``ast.parse``) resets the interpreter's AST recursion counter, and the outer
    parse fails with ``SystemError: AST constructor recursion depth mismatch``. A test that parses
    source after others left such futures behind failed that way now and then.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(), str(path))
    finally:
        if enabled:
            gc.enable()
