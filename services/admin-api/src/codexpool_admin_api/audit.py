"""The audit log: who changed what, when, and the state before and after, in a Redis stream.

Entries name the actor by token id and name, never by the token. ``before``/``after`` are the
public response shapes of the target, which carry no secrets; ``scrub`` removes any key that
looks secret all the same, so a future field cannot leak through the log by accident.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, Field
from redis.asyncio import Redis

from codexpool_admin_api.auth import Principal
from codexpool_admin_api.metrics import Metrics
from codexpool_shared.keys import Keys
from codexpool_shared.store.replies import text

_UINT64_MAX = 2**64 - 1


def _fits_a_stream_id(value: str) -> str:
    if any(int(part) > _UINT64_MAX for part in value.split("-")):
        raise ValueError("both parts of an entry id are at most 18446744073709551615")
    return value


EntryId = Annotated[str, Field(pattern=r"^\d{1,20}-\d{1,20}$"), AfterValidator(_fits_a_stream_id)]
"""An audit entry id as Redis streams number them: ``<milliseconds>-<sequence>``, each part an
unsigned 64-bit integer (Redis refuses larger ones as "Invalid stream ID")."""

_SECRET_KEY = re.compile(r"token|secret|password|api_key|authorization|cookie", re.IGNORECASE)
_COUNTS = frozenset({"tokens_per_day"})
"""Keys that match ``_SECRET_KEY`` but name a quantity (an agent's limit), never a credential."""


def scrub(value: Any) -> Any:
    """``value`` with every mapping entry whose key looks secret replaced by ``"[redacted]"``."""
    if isinstance(value, dict):
        return {
            k: "[redacted]" if _SECRET_KEY.search(str(k)) and k not in _COUNTS else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


class AuditEntry(BaseModel):
    id: str
    at: datetime
    actor_id: str
    actor_name: str
    actor_role: str
    action: str
    target: str
    before: Any = None
    after: Any = None


class Auditor:
    def __init__(self, redis: Redis, keys: Keys, *, max_entries: int, metrics: Metrics) -> None:
        self._redis = redis
        self._metrics = metrics
        self._keys = keys
        self._max_entries = max_entries

    async def record(
        self,
        actor: Principal,
        action: str,
        target: str,
        *,
        before: Any = None,
        after: Any = None,
    ) -> None:
        fields: dict[str, bytes | str] = {
            "at": datetime.now(UTC).isoformat(),
            "actor_id": actor.id,
            "actor_name": actor.name,
            "actor_role": actor.role,
            "action": action,
            "target": target,
            "before": orjson.dumps(scrub(before)),
            "after": orjson.dumps(scrub(after)),
        }
        await self._redis.xadd(
            self._keys.audit,
            fields,  # type: ignore[arg-type]
            maxlen=self._max_entries,
            approximate=True,
        )
        self._metrics.changes.labels(action).inc()

    async def read(self, *, limit: int, before: str | None) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first, older than entry id ``before`` if given."""
        if before is not None and set(before) <= {"0", "-"}:
            return []  # nothing is older than 0-0, and Redis refuses "(0-0" as a range bound
        upper = "+" if before is None else f"({before}"
        rows = await self._redis.xrevrange(self._keys.audit, max=upper, min="-", count=limit)
        return [_entry(entry_id, fields) for entry_id, fields in rows or ()]


def _entry(
    entry_id: bytes | str | None, fields: dict[bytes | str, bytes | str] | None
) -> AuditEntry:
    f = {text(k): text(v) for k, v in (fields or {}).items()}
    return AuditEntry(
        id=text(entry_id or ""),
        at=datetime.fromisoformat(f["at"]),
        actor_id=f["actor_id"],
        actor_name=f["actor_name"],
        actor_role=f["actor_role"],
        action=f["action"],
        target=f["target"],
        before=orjson.loads(f["before"]),
        after=orjson.loads(f["after"]),
    )
