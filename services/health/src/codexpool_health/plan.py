"""What one batch does to Redis, computed in Python and handed to ``lua/apply.lua`` as data.

The script stays generic (dedupe, add counters, keep maxima, set TTLs, rescore); deciding which
counters an event moves lives here, where it is unit-tested without Redis. Events of one shape
share one delta list (a batch of outcomes usually repeats a few shapes), which the script adds
once per shape times its applied events: the plan and the script's work grow with the shapes of
a batch, not with its events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from codexpool_health.scoring import ScoreConfig
from codexpool_shared.activity import (
    ALL_POOLS,
    HOUR_RETENTION_S,
    MINUTE_RETENTION_S,
    Fields,
    latency_bucket,
)
from codexpool_shared.events import HEALTH_FAULTS, Attempt, RequestOutcomeV1
from codexpool_shared.keys import Keys


def attempt_fields(attempt: Attempt, index: int, count: int) -> list[str]:
    """The counters (each +1) one attempt, ``index`` of ``count`` in its request, moves."""
    fields = [
        Fields.REQUESTS,
        Fields.SUCCESSES if attempt.outcome == "success" else Fields.FAILURES,
    ]
    if attempt.outcome in HEALTH_FAULTS:
        fields.append(Fields.FAULTS)
        if index < count - 1:
            fields.append(Fields.FALLBACKS_AWAY)
    if attempt.fallback:
        fields.append(Fields.FALLBACKS)
    return fields


def latency_fields(attempt: Attempt) -> list[str]:
    """The histogram buckets (each +1) one attempt's TTFB and duration fall in."""
    fields = [f"{Fields.DURATION_PREFIX}{latency_bucket(attempt.duration_ms)}"]
    if attempt.ttfb_ms is not None:
        fields.append(f"{Fields.TTFB_PREFIX}{latency_bucket(attempt.ttfb_ms)}")
    return fields


_BucketKeys = tuple[int, int | None, int | None]
"""``KEYS`` indexes of a provider's totals, minute bucket and hour bucket (None: expired)."""


@dataclass(slots=True)
class BatchPlan:
    """Accumulates the keys, deltas and rescoring of one script call."""

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
    _events: list[list[object]] = field(default_factory=list)
    _deltas: list[list[object]] = field(default_factory=list)
    _token_keys: list[list[int]] = field(default_factory=list)
    _shapes: dict[tuple[object, ...], int] = field(default_factory=dict)
    _recent: dict[str, int] = field(default_factory=dict)
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

    def _recent_key(self, agent_id: str) -> int:
        index = self._recent.get(agent_id)
        if index is None:
            index = self._recent[agent_id] = self.key(self.keys.recent_requests(agent_id))
        return index

    def _shape_deltas(self, agent_id: str, minute: int, attempts: tuple[Attempt, ...]) -> int:
        """The id of the counter deltas (each +1) of a request of this shape, shared by every
        event of the batch with the same one."""
        hour = minute // 3600 * 3600
        deltas: list[object] = []
        token_keys: list[int] = []
        count = len(attempts)
        for position, attempt in enumerate(attempts):
            provider = attempt.provider
            self._providers.add(provider)
            if attempt.outcome in HEALTH_FAULTS:
                self._faulted.add(provider)
            fields = attempt_fields(attempt, position, count)
            outcome = f"{Fields.OUTCOME_PREFIX}{attempt.outcome}"
            latency = latency_fields(attempt)
            for scope in (agent_id, ALL_POOLS):
                totals, minute_key, hour_key = self._keys_of(scope, provider, minute, hour)
                for name in (*fields, outcome):
                    deltas += (totals, name, 1)
                if minute_key is not None:
                    for name in (*fields, *latency):
                        deltas += (minute_key, name, 1)
                if hour_key is not None:
                    for name in fields:
                        deltas += (hour_key, name, 1)
                    # The tokens go to the attempt that answered, in the hash already written.
                    if position == count - 1:
                        token_keys.append(hour_key)
        self._deltas.append(deltas)
        self._token_keys.append(token_keys)
        return len(self._deltas)

    def add(self, event: RequestOutcomeV1, body: bytes) -> None:
        """Add one event: its dedupe key, its counter deltas, its maxima and its log body.

        The counters an event moves depend on its shape only (agent, minute, and each attempt's
        provider, outcome, fallback and latency buckets): events of one shape share one delta
        list, which the script adds once per applied event, and one list of the hour buckets
        its tokens go to. What is the event's own (its tokens, its fault time) goes with it.
        """
        at = event.occurred_at.timestamp()
        minute = int(at // 60) * 60
        attempts = event.attempts
        shape = (
            event.agent_id,
            minute,
            *[
                (
                    a.provider,
                    a.outcome,
                    a.fallback,
                    latency_bucket(a.duration_ms),
                    None if a.ttfb_ms is None else latency_bucket(a.ttfb_ms),
                )
                for a in attempts
            ],
        )
        delta_id = self._shapes.get(shape)
        if delta_id is None:
            delta_id = self._shapes[shape] = self._shape_deltas(event.agent_id, minute, attempts)
        maxima: list[object] = []
        for attempt in attempts:
            if attempt.outcome in HEALTH_FAULTS:
                totals = self._keys_of(ALL_POOLS, attempt.provider, minute, minute // 3600 * 3600)
                maxima += (totals[0], Fields.LAST_FAULT_AT, at)
        usage = event.usage
        tokens = 0 if usage is None else [usage.input_tokens, usage.output_tokens]
        # An event's own keys are not looked up for reuse: a key named twice (a redelivery in
        # the same batch) under two indexes is still one key to the script.
        names = self.key_names
        names.append(self.keys.event_seen(str(event.event_id)))
        seen = len(names)
        explain: object = 0
        if self.explain_ttl_s:
            names.append(self.keys.request(event.request_id))
            explain = [len(names), self._recent_key(event.agent_id), event.request_id]
        self._events.append([seen, delta_id, maxima, explain, tokens])
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
            self.key(self.keys.health(provider)),
            self.key(self.keys.health_totals(ALL_POOLS, provider)),
            [self.key(self.keys.health_minute(ALL_POOLS, provider, s)) for s in starts],
            1 if force or not self.rescore_after_s else 0,
        ]

    def rescore_touched(self) -> None:
        """Rescore every provider an added event tried: at once after a health fault on it (the
        router opens circuits on it), otherwise once its score is ``rescore_after_s`` old."""
        for provider in sorted(self._providers):
            self.rescore(provider, force=provider in self._faulted)

    def script_args(self) -> tuple[list[str], list[bytes]]:
        """The script's ``KEYS`` and ``ARGV``: the plan, then one log body per event."""
        plan = orjson.dumps(
            {
                "now": self.now,
                "seen_ttl": self.seen_ttl_s,
                "events": self._events,
                "deltas": self._deltas,
                "token_keys": self._token_keys,
                "expire": [x for pair in self._expire.items() for x in pair],
                "log": self.key(self.keys.outcome_log) if self.log_maxlen else 0,
                "log_max": self.log_maxlen,
                "explain_ttl": self.explain_ttl_s,
                "recent_max": self.recent_max,
                "providers_key": self.key(self.keys.health_providers),
                "providers": sorted(self._providers),
                "rescore": list(self._rescore.values()),
                "rescore_after": self.rescore_after_s,
                "cfg": self.score.for_script(),
            }
        )
        return self.key_names, [plan, *self.bodies]
