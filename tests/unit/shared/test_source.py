"""``testing.source.parse`` against the CPython 3.11 fault it exists for."""

from __future__ import annotations

import ast
import contextlib
import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import codexpool_shared.testing.source
from codexpool_shared.testing.source import parse

SOURCE = Path(codexpool_shared.testing.source.__file__)


class _ParsesWhenCollected:
    """A cycle whose finalizer parses, as asyncio's "exception was never retrieved" log does,
    and leaves another such cycle behind: every collection, wherever it runs, finds one."""

    chain = False

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        ast.parse("a.b(c)[d]")
        if _ParsesWhenCollected.chain:
            _ParsesWhenCollected()


@contextlib.contextmanager
def _collections_during_parses() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.set_threshold(10)
    _ParsesWhenCollected.chain = True
    _ParsesWhenCollected()
    try:
        yield
    finally:
        _ParsesWhenCollected.chain = False
        gc.set_threshold(*threshold)
        gc.collect()


def _failures(parser: Callable[[Path], object]) -> int:
    failures = 0
    for _ in range(20):
        try:
            parser(SOURCE)
        except SystemError:
            failures += 1
    return failures


def test_a_finalizer_that_parses_does_not_break_the_parse() -> None:
    # Counted first and asserted after: pytest's own report of a failure parses too.
    with _collections_during_parses():
        direct = _failures(lambda path: ast.parse(path.read_text(), str(path)))
        ours = _failures(parse)
        enabled = gc.isenabled()
    # The fault is real on this interpreter (on one without it, ``parse`` could go).
    assert direct > 0
    assert ours == 0
    assert enabled
