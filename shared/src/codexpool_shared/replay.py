"""What-if replay: a pool's recorded requests run again under another strategy or membership.

The order comes from the router's own selection script (``select.lua`` through ``Selector``),
run against a scratch namespace that holds only the replayed pool: its members' records, a live
state per member whose quota snapshot and cooldown the replay keeps current, and the pool's own
round-robin counter. Nothing of the real namespace is written; the scratch keys are deleted at
the end. Each replayed attempt is decided from the record (the model, and its limits, are in the
admin API README):

- a member's quota cost per answered request and window comes from its quota history
  (``forecast.read_samples``): the rise of ``used_percent`` within one window divided by the
  requests it answered meanwhile (from the outcome log); its use at the start of the replay is
  its first sample's, less the requests it answered before that sample; a window resets at its
  recorded ``resets_at``;
- a member at 100 % answers ``usage_limit`` and cools down until its reset (as the router does);
- the health faults it actually had come back in the same order (its k-th replayed attempt
  fails when its k-th recorded attempt did), so failures are replayed, not re-drawn;
- otherwise it answers, and its use rises by its cost.

Bounded: at most ``max_requests`` requests (the newest) and ``deadline_s`` of work; one script
call and one write per replayed request.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import orjson
from redis.asyncio import Redis

from codexpool_shared.events import HEALTH_FAULTS, RequestOutcomeV1, Strategy
from codexpool_shared.forecast import WINDOWS, Sample, Window, read_samples
from codexpool_shared.keys import Keys
from codexpool_shared.store.live import QUOTA_WINDOW_FIELDS, CooldownReason, LiveFields
from codexpool_shared.store.pools import PoolFields
from codexpool_shared.store.providers import ProviderFields
from codexpool_shared.store.selection import Selector

_SCAN_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """The selection settings a replay runs with (the router's defaults; scores ignored)."""

    max_attempts: int = 3
    health_threshold: float = 0.0
    circuit_grace_s: float = 120.0
    affinity_ttl_s: float = 3600.0
    probe_lock_s: float = 30.0
    circuit_base_s: float = 30.0
    circuit_max_s: float = 300.0
    lease_ttl_s: float = 30.0


@dataclass(slots=True)
class Tally:
    """Served, limited and fallback counts of a set of requests (actual or projected)."""

    served: int = 0
    limited: int = 0
    """Requests that met a usage limit: an attempt refused with it, or no member left."""
    fallbacks: int = 0
    first_exhaustion_at: float | None = None
    per_provider: Counter[str] = field(default_factory=Counter)
    """Requests each member answered."""

    def exhausted(self, at: float) -> None:
        """Note a usage limit met at ``at`` (the first one is kept)."""
        if self.first_exhaustion_at is None:
            self.first_exhaustion_at = at


async def recorded_requests(
    redis: Redis, keys: Keys, agent_id: str, since_s: float, now: float, max_requests: int
) -> tuple[list[RequestOutcomeV1], bool]:
    """The agent's requests of the last ``since_s`` from the outcome log, oldest first.

    The newest ``max_requests`` of them, and whether there were more.
    """
    low = f"{int((now - since_s) * 1000)}-0"
    high = "+"
    found: list[RequestOutcomeV1] = []
    while len(found) <= max_requests:
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await redis.xrevrange(keys.outcome_log, max=high, min=low, count=_SCAN_CHUNK),
        )
        for _, fields in entries:
            event = RequestOutcomeV1.model_validate_json(fields[b"e"])
            if event.agent_id == agent_id:
                found.append(event)
        if len(entries) < _SCAN_CHUNK:
            break
        last = entries[-1][0]
        ms, seq = last.decode().split("-")
        high = f"{ms}-{int(seq) - 1}" if int(seq) else f"{int(ms) - 1}-18446744073709551615"
    truncated = len(found) > max_requests
    found = found[:max_requests]
    found.reverse()
    return found, truncated


def actual_tally(requests: Sequence[RequestOutcomeV1]) -> Tally:
    """What the recorded requests did."""
    tally = Tally()
    for event in requests:
        at = event.occurred_at.timestamp()
        if event.final_outcome == "success" and event.final_provider:
            tally.served += 1
            tally.per_provider[event.final_provider] += 1
        limited = any(a.outcome == "usage_limit" for a in event.attempts)
        if limited or event.final_outcome in ("pool_exhausted", "usage_limit"):
            tally.limited += 1
            tally.exhausted(at)
        tally.fallbacks += sum(1 for a in event.attempts if a.fallback)
    return tally


@dataclass(slots=True)
class _Quota:
    used: float
    resets_at: float
    window_s: float
    cost: float


def _quota(samples: Sequence[Sample], answered: Sequence[float], start: float) -> _Quota | None:
    """A member's window at ``start`` and its cost per answered request (see the module)."""
    if not samples:
        return None
    first, last = samples[0], samples[-1]
    same = [s for s in samples if abs(s.resets_at - last.resets_at) < 120]
    head, tail = same[0], same[-1]
    between = sum(1 for t in answered if head.t <= t < tail.t)
    cost = (tail.used - head.used) / between if between and tail.used > head.used else 0.0
    before = sum(1 for t in answered if start <= t < first.t)
    used = max(0.0, first.used - cost * before) if first.resets_at == last.resets_at else 0.0
    return _Quota(used, first.resets_at, first.window_s, cost)


async def replay(
    redis: Redis,
    keys: Keys,
    requests: Sequence[RequestOutcomeV1],
    strategy: Strategy,
    providers: Sequence[str],
    *,
    start: float,
    now: float,
    deadline_s: float = 20.0,
    settings: ReplaySettings | None = None,
) -> tuple[Tally, bool]:
    """Run ``requests`` through ``providers`` under ``strategy``.

    Returns the projection, and whether the deadline cut it short.
    """
    answered: dict[str, list[float]] = {p: [] for p in providers}
    faults: dict[str, list[bool]] = {p: [] for p in providers}
    for event in requests:
        if event.final_outcome == "success" and event.final_provider in answered:
            # When the request started: the snapshot its answer carried was observed after it,
            # and the event itself is stamped after the answer ended.
            began = event.occurred_at.timestamp() - event.client_latency_ms / 1000
            answered[event.final_provider].append(began)
        for attempt in event.attempts:
            if attempt.provider in faults and attempt.outcome != "usage_limit":
                faults[attempt.provider].append(attempt.outcome in HEALTH_FAULTS)
    samples = await read_samples(redis, keys, providers, now, lookback_s=now - start + 3600)
    quotas: dict[str, dict[Window, _Quota]] = {}
    for name in providers:
        quotas[name] = {}
        for window in WINDOWS:
            found = _quota(samples[name][window], answered[name], start)
            if found is not None:
                quotas[name][window] = found

    scratch = Keys(f"{keys.namespace}-replay-{uuid.uuid4().hex[:12]}")
    agent, digest = "replay", uuid.uuid4().hex
    written = [scratch.api_key(digest), scratch.pool(agent), scratch.rr_counter(agent)]
    try:
        await redis.set(scratch.api_key(digest), agent)
        pool = {
            PoolFields.STRATEGY: strategy,
            PoolFields.PROVIDERS: orjson.dumps(list(providers)).decode(),
            PoolFields.VERSION: 1,
        }
        await redis.hset(scratch.pool(agent), mapping=pool)  # type: ignore[arg-type]
        for name in providers:
            written += [scratch.provider(name), scratch.live(name), scratch.probe_lock(name)]
            record = {
                ProviderFields.STATUS: "active",
                ProviderFields.ACCOUNT_ID: name,
                ProviderFields.ACCESS_TOKEN: "replay",
                ProviderFields.CREDENTIAL_VERSION: 1,
            }
            await redis.hset(scratch.provider(name), mapping=record)  # type: ignore[arg-type]
            live: dict[str, float] = {}
            for window, q in quotas[name].items():
                used, minutes, resets = QUOTA_WINDOW_FIELDS[window]
                live |= {used: q.used, minutes: q.window_s / 60, resets: q.resets_at}
            if live:
                await redis.hset(scratch.live(name), mapping=live)  # type: ignore[arg-type]
        selector = Selector(redis, scratch, settings or ReplaySettings())
        return await _run(redis, scratch, selector, digest, requests, quotas, faults, deadline_s)
    finally:
        await redis.delete(*written)


async def _run(
    redis: Redis,
    scratch: Keys,
    selector: Selector,
    digest: str,
    requests: Sequence[RequestOutcomeV1],
    quotas: dict[str, dict[Window, _Quota]],
    faults: dict[str, list[bool]],
    deadline_s: float,
) -> tuple[Tally, bool]:
    tally = Tally()
    cursor: Counter[str] = Counter()
    stop_at = time.monotonic() + deadline_s
    for event in requests:
        if time.monotonic() > stop_at:
            return tally, True
        at = event.occurred_at.timestamp()
        for q in (q for windows in quotas.values() for q in windows.values()):
            while q.window_s > 0 and q.resets_at and at >= q.resets_at:
                q.used, q.resets_at = 0.0, q.resets_at + q.window_s
        selection = await selector.select(
            digest, int(at * 1000), "", "", event.request_id, snapshot=False
        )
        limited = selection.quota_wait_ms > 0 and not selection.candidates
        tried = False
        for candidate in selection.candidates:
            name = candidate.name
            if tried:
                tally.fallbacks += 1
            tried = True
            windows = quotas.get(name, {})
            full = [q for q in windows.values() if q.used >= 100]
            if full:
                limited = True
                until = max(q.resets_at for q in full) * 1000
                live = {
                    LiveFields.COOLDOWN_UNTIL: until,
                    LiveFields.COOLDOWN_REASON: CooldownReason.QUOTA,
                }
                await redis.hset(scratch.live(name), mapping=live)  # type: ignore[arg-type]
                continue
            history = faults.get(name) or []
            k = cursor[name]
            cursor[name] += 1
            if history and history[k % len(history)]:
                continue
            tally.served += 1
            tally.per_provider[name] += 1
            snapshot: dict[str, float] = {}
            for window, q in windows.items():
                q.used = min(100.0, q.used + q.cost)
                snapshot[QUOTA_WINDOW_FIELDS[window][0]] = q.used
            if snapshot:
                await redis.hset(scratch.live(name), mapping=snapshot)  # type: ignore[arg-type]
            break
        if limited:
            tally.limited += 1
            tally.exhausted(at)
    return tally, False
