"""``codexpool-health rebuild``: recompute every aggregate by replaying the outcome log.

Each applied event is appended to the capped stream ``Keys.outcome_log`` by the same script
that applies it, so the log holds every applied event exactly once (up to its length,
``HEALTH_OUTCOME_LOG_MAXLEN``). Rebuilding deletes the namespace's aggregates, scores and
dedupe keys, replays the log through the same ``HealthStore.apply`` (without logging again),
then rescores. Use it after changing the formula or the layout. Stop the consumers first
(scale to zero, or ``HEALTH_CONSUME=false``): an event applied while the replay runs could
count twice. Lifetime totals only cover what the log still holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from codexpool_health.store import HealthStore, Outcome
from codexpool_shared.activity import HEALTH_VERDICT
from codexpool_shared.events import RequestOutcomeV1
from codexpool_shared.keys import Keys
from codexpool_shared.messaging import MalformedMessageError, decode


@dataclass(frozen=True, slots=True)
class RebuildReport:
    deleted_keys: int
    replayed: int
    skipped: int
    providers: int


def _bytes(value: bytes | str | None) -> bytes:
    return value.encode() if isinstance(value, str) else value or b""


async def _delete_aggregates(redis: Redis, keys: Keys) -> int:
    deleted = 0
    for pattern in (keys.health_aggregates_pattern, keys.event_seen("*")):
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await redis.unlink(*batch)
                batch = []
        if batch:
            deleted += await redis.unlink(*batch)
    # The scores live in the providers' live hashes, beside the router's state, which stays.
    async for key in redis.scan_iter(match=keys.live("*"), count=1000):
        deleted += 1 if await redis.hdel(key, *HEALTH_VERDICT) else 0
    return deleted + await redis.unlink(keys.health_providers)


async def rebuild(
    redis: Redis, keys: Keys, store: HealthStore, *, chunk: int = 500
) -> RebuildReport:
    """Delete the aggregates of ``keys``' namespace and replay its outcome log into them."""
    deleted = await _delete_aggregates(redis, keys)
    replayed = skipped = 0
    start = "-"
    while True:
        entries = await redis.xrange(keys.outcome_log, min=start, max="+", count=chunk)
        if not entries:
            break
        outcomes = []
        for _, fields in entries:
            body = _bytes((fields or {}).get(b"e", b""))
            try:
                event = decode(body)
            except MalformedMessageError:
                skipped += 1
                continue
            if isinstance(event, RequestOutcomeV1):
                outcomes.append(Outcome(event, body))
        if outcomes:
            result = await store.apply(outcomes, log=False)
            replayed += sum(result.applied)
        start = "(" + _bytes(entries[-1][0]).decode()
    scores = await store.rescore()
    return RebuildReport(deleted, replayed, skipped, len(scores))
