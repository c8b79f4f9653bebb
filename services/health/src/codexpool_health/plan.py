"""What one batch does to Redis, computed in Python and handed to ``lua/apply.lua`` as data.

The script stays generic (dedupe, add counters, keep maxima, set TTLs, rescore); deciding which
counters an event moves lives here, where it is unit-tested without Redis. The plan holds the
batch's counters already summed (one increment per key and field, tokens and the latest fault
time included), so the script adds them without work per event: decoding a delta list per event
and adding it up in Lua was a third of Redis's CPU per event. The sum assumes every event of the
plan is new; when the script finds one already applied it writes nothing, and the store plans
the batch again without it (``HealthStore.apply``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson

from codexpool_health.scoring import ScoreConfig
from codexpool_shared.activity import (
    ALL_POOLS,
    HOUR_RETENTION_S,
    LATENCY_BOUNDS_MS,
    MINUTE_RETENTION_S,
    Fields,
    latency_bucket,
)
from codexpool_shared.events import HEALTH_FAULTS, Attempt, RequestOutcomeV1
from codexpool_shared.keys import Keys


def attempt_fields(attempt: Attempt, last: bool) -> list[str]:
    """The counters (each +1) one attempt moves; ``last``: its request's last attempt."""
    fields = [
        Fields.REQUESTS,
        Fields.SUCCESSES if attempt.outcome == "success" else Fields.FAILURES,
    ]
    if attempt.outcome in HEALTH_FAULTS:
        fields.append(Fields.FAULTS)
        if not last:
            fields.append(Fields.FALLBACKS_AWAY)
    if attempt.fallback:
        fields.append(Fields.FALLBACKS)
    return fields


_DURATION_FIELDS = tuple(f"{Fields.DURATION_PREFIX}{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
_TTFB_FIELDS = tuple(f"{Fields.TTFB_PREFIX}{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1))


def latency_fields(attempt: Attempt) -> list[str]:
    """The histogram buckets (each +1) one attempt's TTFB and duration fall in."""
    fields = [_DURATION_FIELDS[latency_bucket(attempt.duration_ms)]]
    if attempt.ttfb_ms is not None:
        fields.append(_TTFB_FIELDS[latency_bucket(attempt.ttfb_ms)])
    return fields


_BucketKeys = tuple[int, int | None, int | None]
"""``KEYS`` indexes of a provider's totals, minute bucket and hour bucket (None: expired)."""

_Counter = tuple[int, str]
"""A counter: the ``KEYS`` index of its hash and its field."""


@dataclass(frozen=True, slots=True)
class _Part:
    """What an attempt of one kind (agent, minute, provider, outcome, fallback, last or not)
    moves, the same for every such attempt of the batch: its counters (each +1), the minute
    buckets its latencies go to, the hour buckets its request's tokens go to if it answered,
    and the totals whose ``last_fault_at`` it moves."""

    counters: list[_Counter]
    minute_keys: list[int]
    token_keys: list[int]
    fault_totals: int | None


@dataclass(slots=True)
class BatchPlan:
    """Accumulates the keys, summed counters and rescoring of one script call."""

    keys: Keys
    now: float
    score: ScoreConfig
    seen_ttl_s: int
    log_maxlen: int
    explain_ttl_s: int = 0
    recent_max: int = 0
    rescore_after_s: float = 0.0
    key_names: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)
    _events: list[object] = field(default_factory=list)
    _counts: Counter[_Counter] = field(default_factory=Counter)
    _maxima: dict[_Counter, float] = field(default_factory=dict)
    _parts: dict[tuple[str, int, str, str, bool, bool], _Part] = field(default_factory=dict)
    _recent: dict[int, list[str]] = field(default_factory=dict)
    _recent_keys: dict[str, int] = field(default_factory=dict)
    _expire: dict[int, int] = field(default_factory=dict)
    _providers: set[str] = field(default_factory=set)
    _faulted: set[str] = field(default_factory=set)
    _rescore: dict[str, list[object]] = field(default_factory=dict)
    _bucket_keys: dict[tuple[str, str, int, int], _BucketKeys] = field(default_factory=dict)

    def key(self, name: str) -> int:
        """The 1-based ``KEYS`` index of ``name``."""
        index = self._index.get(name)
        if index is None:
            self.key_names.append(name)
            index = self._index[name] = len(self.key_names)
        return index

    def _bucket(self, name: str, start: int, retention_s: int) -> int | None:
        ttl = int(start + retention_s - self.now)
        if ttl <= 0:
            return None
        index = self.key(name)
        self._expire[index] = ttl
        return index

    def _keys_of(self, scope: str, provider: str, minute: int, hour: int) -> _BucketKeys:
        cache_key = (scope, provider, minute, hour)
        found = self._bucket_keys.get(cache_key)
        if found is None:
            keys = self.keys
            found = self._bucket_keys[cache_key] = (
                self.key(keys.health_totals(scope, provider)),
                self._bucket(
                    keys.health_minute(scope, provider, minute), minute, MINUTE_RETENTION_S
                ),
                self._bucket(keys.health_hour(scope, provider, hour), hour, HOUR_RETENTION_S),
            )
        return found

    def _recent_ids(self, agent_id: str) -> list[str]:
        index = self._recent_keys.get(agent_id)
        if index is None:
            index = self._recent_keys[agent_id] = self.key(self.keys.recent_requests(agent_id))
        return self._recent.setdefault(index, [])

    def _part(self, agent_id: str, minute: int, attempt: Attempt, last: bool) -> _Part:
        provider = attempt.provider
        hour = minute // 3600 * 3600
        self._providers.add(provider)
        fault_totals = None
        if attempt.outcome in HEALTH_FAULTS:
            self._faulted.add(provider)
            fault_totals = self._keys_of(ALL_POOLS, provider, minute, hour)[0]
        fields = attempt_fields(attempt, last)
        outcome = f"{Fields.OUTCOME_PREFIX}{attempt.outcome}"
        counters: list[_Counter] = []
        minute_keys: list[int] = []
        token_keys: list[int] = []
        for scope in (agent_id, ALL_POOLS):
            totals, minute_key, hour_key = self._keys_of(scope, provider, minute, hour)
            counters += [(totals, name) for name in (*fields, outcome)]
            if minute_key is not None:
                counters += [(minute_key, name) for name in fields]
                minute_keys.append(minute_key)
            if hour_key is not None:
                counters += [(hour_key, name) for name in fields]
                # The tokens go to the attempt that answered, in the hash already written.
                if last:
                    token_keys.append(hour_key)
        return _Part(counters, minute_keys, token_keys, fault_totals)

    def add(self, event: RequestOutcomeV1, body: bytes) -> None:
        """Add one event, as new: its dedupe key, its counters, its maxima and its log body.

        What an attempt moves depends on its kind only (agent, minute, provider, outcome,
        fallback, and whether it was the request's last), so it is worked out once per kind of
        the batch; its latency buckets, its request's tokens, its fault time and its request id
        are added on top.
        """
        at = event.occurred_at.timestamp()
        minute = int(at // 60) * 60
        agent_id = event.agent_id
        attempts = event.attempts
        counts = self._counts
        parts = self._parts
        usage = event.usage
        final = len(attempts) - 1
        for position, attempt in enumerate(attempts):
            last = position == final
            kind = (agent_id, minute, attempt.provider, attempt.outcome, attempt.fallback, last)
            part = parts.get(kind)
            if part is None:
                part = parts[kind] = self._part(agent_id, minute, attempt, last)
            counts.update(part.counters)
            latency = latency_fields(attempt)
            for minute_key in part.minute_keys:
                for name in latency:
                    counts[minute_key, name] += 1
            if usage is not None:
                for hour_key in part.token_keys:
                    counts[hour_key, Fields.INPUT_TOKENS] += usage.input_tokens
                    counts[hour_key, Fields.OUTPUT_TOKENS] += usage.output_tokens
            if part.fault_totals is not None:
                fault = (part.fault_totals, Fields.LAST_FAULT_AT)
                if at > self._maxima.get(fault, 0.0):
                    self._maxima[fault] = at
        # An event's own keys are not looked up for reuse: a key named twice (a redelivery in
        # the same batch) under two indexes is still one key to the script.
        names = self.key_names
        names.append(self.keys.event_seen(str(event.event_id)))
        self._events.append(len(names))
        if self.explain_ttl_s:
            names.append(self.keys.request(event.request_id))
            self._events.append(len(names))
            if self.recent_max:
                self._recent_ids(event.agent_id).append(event.request_id)
        else:
            self._events.append(0)
        self.bodies.append(body if self.log_maxlen or self.explain_ttl_s else b"")

    def rescore(self, provider: str, *, force: bool = True) -> None:
        """Recompute ``provider``'s score (across pools) at the end of the script.

        Unless ``force``, the script skips it when its stored score is younger than
        ``rescore_after_s``.
        """
        if provider in self._rescore:
            return
        minute = int(self.now // 60) * 60
        starts = [minute - 60 * i for i in range(self.score.window_minutes)]
        self._rescore[provider] = [
            provider,
            self.key(self.keys.live(provider)),
            self.key(self.keys.health_totals(ALL_POOLS, provider)),
            [self.key(self.keys.health_minute(ALL_POOLS, provider, s)) for s in starts],
            1 if force or not self.rescore_after_s else 0,
        ]

    def rescore_touched(self) -> None:
        """Rescore every provider an added event tried: at once after a health fault on it (the
        router opens circuits on it), otherwise once its score is ``rescore_after_s`` old."""
        for provider in sorted(self._providers):
            self.rescore(provider, force=provider in self._faulted)

    @property
    def dedupe_by_request(self) -> bool:
        """Whether the request keys (explanations) are the dedupe: when they are kept at least
        as long as the seen keys would be (see ``lua/apply.lua``)."""
        return 0 < self.seen_ttl_s <= self.explain_ttl_s

    def script_args(self) -> tuple[list[str], list[bytes]]:
        """The script's ``KEYS`` and ``ARGV``: the plan, then one log body per event."""
        plan = orjson.dumps(
            {
                "now": self.now,
                "seen_ttl": self.seen_ttl_s,
                "events": self._events,
                "by_request": 1 if self.dedupe_by_request else 0,
                "incr": [x for (k, f), n in self._counts.items() for x in (k, f, n)],
                "maxima": [x for (k, f), v in self._maxima.items() for x in (k, f, v)],
                "expire": [x for pair in self._expire.items() for x in pair],
                "log": self.key(self.keys.outcome_log) if self.log_maxlen else 0,
                "log_max": self.log_maxlen,
                "explain_ttl": self.explain_ttl_s,
                "recent": [x for pair in self._recent.items() for x in pair],
                "recent_max": self.recent_max,
                "providers_key": self.key(self.keys.health_providers),
                "providers": sorted(self._providers),
                "rescore": list(self._rescore.values()),
                "rescore_after": self.rescore_after_s,
                "cfg": self.score.for_script(),
            }
        )
        return self.key_names, [plan, *self.bodies]
