"""The health aggregates in Redis: apply outcome batches exactly once, and rescore providers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from codexpool_health.plan import BatchPlan
from codexpool_health.scoring import ScoreConfig
from codexpool_shared.activity import Fields, HealthFields
from codexpool_shared.events import HealthBand, RequestOutcomeV1
from codexpool_shared.keys import Keys
from codexpool_shared.store.replies import text
from codexpool_shared.store.scripts import load

_SCRIPT = load("codexpool_health", "lua/apply.lua", Fields, HealthFields)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decoded outcome event and the body it came in (what the outcome log keeps)."""

    event: RequestOutcomeV1
    body: bytes


@dataclass(frozen=True, slots=True)
class ProviderScore:
    """A provider's score after a script call, and the band it had before."""

    provider: str
    score: float
    band: HealthBand
    previous: HealthBand | None

    @property
    def crossed(self) -> bool:
        """Whether this call moved the provider to another band (a first score only when bad)."""
        if self.previous is None:
            return self.band != "healthy"
        return self.band != self.previous


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Which events of a batch were applied (the others had been already), and the new scores."""

    applied: list[bool]
    scores: list[ProviderScore]


class HealthStore:
    """Applies outcome batches and rescores providers, each in one atomic Lua script call."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        score: ScoreConfig | None = None,
        seen_ttl_s: int = 86_400,
        log_maxlen: int = 0,
        explain_ttl_s: int = 0,
        recent_max: int = 0,
        score_refresh_s: float = 0.0,
    ) -> None:
        """``score_refresh_s``: a batch with no health fault on a provider rescores it only once
        its stored score is this old (0: after every batch); see ``BatchPlan.rescore_touched``."""
        self._redis = redis
        self._keys = keys
        self._score = score or ScoreConfig()
        self._seen_ttl_s = seen_ttl_s
        self._log_maxlen = log_maxlen
        self._explain_ttl_s = explain_ttl_s
        self._recent_max = recent_max
        self._score_refresh_s = score_refresh_s
        self._script = redis.register_script(_SCRIPT.source)

    def _plan(self, now: float | None, *, log: bool = True) -> BatchPlan:
        return BatchPlan(
            self._keys,
            time.time() if now is None else now,
            self._score,
            self._seen_ttl_s,
            self._log_maxlen if log else 0,
            self._explain_ttl_s if log else 0,
            self._recent_max,
            self._score_refresh_s,
        )

    async def _run(self, plan: BatchPlan) -> tuple[str, list[ProviderScore]]:
        keys, args = plan.script_args()
        reply = cast(list[object], await self._script(keys=keys, args=args))
        scores = []
        for row in cast(list[list[bytes | str]], reply[1:]):
            provider, score, band, previous = (text(x) for x in row)
            scores.append(
                ProviderScore(
                    provider,
                    float(score),
                    cast(HealthBand, band),
                    cast(HealthBand, previous) if previous else None,
                )
            )
        return text(cast(bytes | str, reply[0])), scores

    async def apply(
        self, outcomes: Sequence[Outcome], *, now: float | None = None, log: bool = True
    ) -> BatchResult:
        """Apply each outcome not applied before, then rescore the providers they tried (those
        without a health fault in the batch only if their score is ``score_refresh_s`` old).

        The plan sums the counters of the events it holds, so the script applies it only if
        every one is new; otherwise it writes nothing and says which were not, and the batch is
        planned again without those. Each such round drops at least one event, so there are at
        most as many as events, and usually one: duplicates are redeliveries.

        Args:
            outcomes: The batch; duplicates (redeliveries) are recognised by ``event_id``.
            now: Epoch seconds for TTLs and the score window (tests pin it).
            log: Append applied events to the outcome log (off while replaying it).
        """
        pending = list(range(len(outcomes)))
        while pending:
            plan = self._plan(now, log=log)
            for i in pending:
                outcome = outcomes[i]
                plan.add(outcome.event, outcome.body)
            plan.rescore_touched()
            flags, scores = await self._run(plan)
            if "0" not in flags:
                applied = set(pending)
                return BatchResult([i in applied for i in range(len(outcomes))], scores)
            pending = [i for i, flag in zip(pending, flags, strict=True) if flag == "1"]
        return BatchResult([False] * len(outcomes), [])

    async def rescore(
        self, providers: Sequence[str] | None = None, *, now: float | None = None
    ) -> list[ProviderScore]:
        """Recompute scores as time passes (``None``: every provider seen so far)."""
        if providers is None:
            members = await self._redis.smembers(self._keys.health_providers)
            providers = sorted(text(m) for m in members)
        if not providers:
            return []
        plan = self._plan(now)
        for provider in providers:
            plan.rescore(provider)
        return (await self._run(plan))[1]
