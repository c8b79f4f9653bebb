"""The audit log page: newest first, a page at a time, filtered by actor and kind.

The admin API pages the log by entry id (``before``) and does not filter; the page reads
batches and keeps the matching entries, so a filter that matches little still fills a page.
The scan per page view is bounded; its cursor then carries on where the scan stopped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from codexpool_ui import formatting
from codexpool_ui.admin import AdminClient, JsonObject

PAGE_SIZE = 50
BATCH = 200
MAX_SCANNED = 2000
"""Entries one page view reads at most while looking for matches."""

KINDS = ("provider", "agent", "pool", "token", "config")
"""Kinds offered in the filter: the first part of an action (``provider.register``)."""

_KIND = re.compile(r"^[a-z][a-z0-9_.]{0,62}$")
_CURSOR = re.compile(r"^\d{1,20}-\d{1,20}$")
_DETAILS_LIMIT = 300


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str = ""
    """Matches the actor's name or token id, ignoring case; empty matches everyone."""
    kind: str = ""
    """An action or the start of one: ``provider`` matches ``provider.register``."""

    def matches(self, entry: Mapping[str, Any]) -> bool:
        actor = self.actor.casefold()
        if actor and actor not in (
            str(entry.get("actor_name", "")).casefold(),
            str(entry.get("actor_id", "")).casefold(),
        ):
            return False
        action = str(entry.get("action", ""))
        return not self.kind or action == self.kind or action.startswith(self.kind + ".")


def refused_field(actor: str, kind: str, before: str) -> str | None:
    """Why the filter cannot be used, naming the field; None when it can."""
    if len(actor) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in actor):
        return "actor: at most 100 printable characters"
    if kind and not _KIND.fullmatch(kind):
        return "kind: an action such as provider or agent.key.rotate"
    if before and not _CURSOR.fullmatch(before):
        return "before: not a page of this log; start from the newest entries"
    return None


@dataclass(frozen=True, slots=True)
class EntryView:
    id: str
    at: str
    actor_name: str
    actor_id: str
    actor_role: str
    action: str
    target: str
    details: str


def _details(entry: Mapping[str, Any]) -> str:
    # before/after are the public shapes of the target, scrubbed of secrets by the admin API.
    parts = []
    for side in ("before", "after"):
        value = entry.get(side)
        if value not in (None, {}, []):
            parts.append(f"{side}: {json.dumps(value, separators=(',', ':'), sort_keys=True)}")
    text = "; ".join(parts)
    return text if len(text) <= _DETAILS_LIMIT else text[: _DETAILS_LIMIT - 1] + "…"


def entry_view(entry: Mapping[str, Any]) -> EntryView:
    return EntryView(
        id=str(entry.get("id", "")),
        at=formatting.timestamp(entry.get("at")),
        actor_name=str(entry.get("actor_name", "")),
        actor_id=str(entry.get("actor_id", "")),
        actor_role=str(entry.get("actor_role", "")),
        action=str(entry.get("action", "")),
        target=str(entry.get("target", "")),
        details=_details(entry),
    )


async def read_page(
    admin: AdminClient, token: str, wanted: AuditFilter, before: str | None
) -> tuple[list[EntryView], str | None]:
    """Up to ``PAGE_SIZE`` matching entries older than ``before``, and the cursor of the next
    page (None when the log has no older entries)."""
    found: list[EntryView] = []
    cursor, scanned = before, 0
    while scanned < MAX_SCANNED:
        page: JsonObject = await admin.audit(token, limit=BATCH, before=cursor)
        data = [e for e in page.get("data") or [] if isinstance(e, Mapping)]
        for entry in data:
            scanned += 1
            cursor = str(entry.get("id", ""))
            if wanted.matches(entry):
                found.append(entry_view(entry))
                if len(found) == PAGE_SIZE:
                    return found, cursor
        if not page.get("next_before"):
            return found, None
    return found, cursor
