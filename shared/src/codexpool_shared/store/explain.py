"""A request's routing decision (``Decision``) from what the selection script already returned.

The script reports the candidates in attempt order (``c``), the members its hard filter skipped
with the reason (``x``) and the eligible members it left out (``y``); this module turns them
into the outcome event's ``decision`` after the answer, so explaining a request costs the hot
path nothing but the few rows the script adds for skipped members. The router writes the
fields straight into the event's body (``events.encode_outcome``); ``Decision`` validates them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from codexpool_shared.events import (
    ChoiceReason,
    ConsideredFields,
    DecisionFields,
    SkipReason,
)
from codexpool_shared.store.selection import Selection

_STATUSES: dict[str, SkipReason] = {"needs_reauth": "needs_reauth", "disabled": "disabled"}


def _at(ms: Any) -> datetime | None:
    value = int(ms or 0)
    return datetime.fromtimestamp(value / 1000, UTC) if value > 0 else None


def _considered(
    name: str,
    eligible: bool,
    reason: SkipReason | ChoiceReason,
    rank: int | None = None,
    until: datetime | None = None,
    detail: str | None = None,
) -> ConsideredFields:
    return {
        "provider": name,
        "eligible": eligible,
        "reason": reason,
        "rank": rank,
        "until": until,
        "detail": detail,
    }


def _skipped(row: Any) -> ConsideredFields:
    name, code, until = str(row[0]), str(row[1]), row[2]
    reason: SkipReason
    detail: str | None = None
    if code.startswith("cooldown:"):
        reason, detail = "cooldown", code.removeprefix("cooldown:") or None
    elif code in ("circuit_open", "probe_in_progress"):
        reason = "circuit_open" if code == "circuit_open" else "probe_in_progress"
    else:
        # A member that is not active: its status, or no record at all (deleted meanwhile).
        reason = _STATUSES.get(code, "not_registered")
        detail = None if code == "not_registered" else code
    return _considered(name, False, reason, until=_at(until), detail=detail)


def decision_fields(selection: Selection) -> DecisionFields:
    """Every member of the selection's pool and why it was tried, in which order, or skipped.

    A ``Decision``'s fields, unvalidated: the outcome event's body takes them as they are.
    """
    out: list[ConsideredFields] = []
    named: set[str] = set()
    for rank, candidate in enumerate(selection.candidates):
        reason: ChoiceReason = "strategy_order"
        if candidate.probe:
            reason = "probe"
        elif rank == 0 and selection.sticky:
            reason = "affinity"
        out.append(_considered(candidate.name, True, reason, rank))
        named.add(candidate.name)
    skipped = [_skipped(row) for row in selection.skipped]
    named.update(c["provider"] for c in skipped)
    for name in selection.passed:
        if name not in named:
            out.append(_considered(name, True, "beyond_attempt_limit"))
            named.add(name)
    out += skipped
    return {
        "candidates": out,
        "pool_size": selection.pool_size,
        "local_snapshot": selection.fallback,
    }
