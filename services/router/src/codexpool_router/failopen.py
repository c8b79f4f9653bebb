"""Fail-open routing: serving the agents this replica has seen while Redis does not answer.

The selection Redis answers is remembered per agent key digest (:class:`Snapshots`, an LRU);
a selection asks for every member's row (the snapshot) only when the agent's is
``failopen_refresh_s`` old, so at most that much older than the store's state.
:class:`StoreBreaker` counts consecutive store failures; once it opens, requests stop paying the
Redis timeout and :class:`LocalRouting` answers from the snapshot: the members that were
eligible then and have no local cooldown since, ordered by the pool's strategy with a
per-process rotation. After ``failopen_open_s`` the next request starts a probe of Redis in the
background (half-open; the request itself is served from the snapshot, so no request pays the
timeout of a probe); its success closes the breaker and shared state resumes.

What this trades, and why it is acceptable (reference section 2.5, "Redis down: fail open"): for
at most ``failopen_max_staleness_s`` a revoked agent key or a removed member is still honoured,
cooldowns and circuits are per replica, round-robin is even per replica rather than across the
fleet, and session affinity is not kept. A quota 429 simply fails over. An agent this replica
has not seen (or not within the staleness) is still refused with 503 ``store_unavailable``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

from codexpool_shared.store.selection import Candidate, Selection, parse_members

BreakerState = Literal["closed", "open", "half_open"]
BREAKER_STATES: dict[BreakerState, int] = {"closed": 0, "open": 1, "half_open": 2}
"""The value of ``codexpool_router_store_breaker_state`` for each state."""


class StoreBreaker:
    """Closed, open after ``failures`` consecutive store failures, half-open while a probe runs.

    While it is not closed, requests do not ask Redis at all (:meth:`allow` is False); once
    ``open_s`` has passed, :meth:`probe_due` tells one caller to start a probe, whose
    :meth:`success` closes the breaker and whose :meth:`failure` opens it for another
    ``open_s``. :meth:`abandon` is a probe that ended without an answer (cancelled).
    """

    def __init__(
        self,
        failures: int,
        open_s: float,
        on_change: Callable[[BreakerState], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._open_s = open_s
        self._on_change = on_change
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self.state: BreakerState = "closed"

    def _become(self, state: BreakerState) -> None:
        if state != self.state:
            self.state = state
            self._on_change(state)

    def allow(self) -> bool:
        """Whether a request may ask Redis."""
        return self.state == "closed"

    def probe_due(self) -> bool:
        """True once per open interval: the caller probes Redis and reports the result."""
        if self.state == "open" and self._clock() - self._opened_at >= self._open_s:
            self._become("half_open")
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._become("closed")

    def failure(self) -> None:
        self._failures += 1
        if self.state == "half_open" or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._become("open")

    def abandon(self) -> None:
        """The probe ended without an answer: the next caller probes again."""
        if self.state == "half_open":
            self._become("open")


class Snapshots:
    """The last selection Redis answered for each agent key digest, least recently used first."""

    def __init__(self, max_agents: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_agents = max_agents
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Selection]] = OrderedDict()

    def record(self, key_digest: str, selection: Selection) -> None:
        entries = self._entries
        entries[key_digest] = (self._clock(), selection)
        entries.move_to_end(key_digest)
        if len(entries) > self.max_agents:
            entries.popitem(last=False)

    def due(self, key_digest: str, max_age_s: float) -> bool:
        """Whether the agent has no snapshot at most ``max_age_s`` old."""
        entry = self._entries.get(key_digest)
        return entry is None or self._clock() - entry[0] >= max_age_s

    def entry(self, key_digest: str, max_age_s: float) -> tuple[float, Selection] | None:
        """When the agent's last selection was recorded (on the clock) and the selection,
        unless it is older than ``max_age_s``."""
        entry = self._entries.get(key_digest)
        if entry is None or self._clock() - entry[0] > max_age_s:
            return None
        return entry

    def __len__(self) -> int:
        return len(self._entries)


class LocalRouting:
    """Selections from the snapshot with local cooldowns and a per-process rotation.

    A local quota cooldown older than the snapshot yields to it: the store, which saw the same
    429, may since have ended the cooldown on fresh quota (``store/live.py``), and the snapshot
    is what it said last. (The store write races the next snapshot by a round trip: at worst
    one more attempt meets the 429 and fails over.) Other local cooldowns are this replica's
    own and stand.
    """

    def __init__(
        self,
        snapshots: Snapshots,
        max_staleness_s: float,
        max_attempts: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._snapshots = snapshots
        self._max_staleness_s = max_staleness_s
        self._max_attempts = max_attempts
        self._clock = clock
        self._cooldowns: dict[str, tuple[int, bool, float]] = {}
        self._turns: dict[str, int] = {}

    def cool_down(self, provider: str, until_ms: int, quota: bool = False) -> None:
        """Keep ``provider`` out of local selections until ``until_ms`` (extend-only)."""
        current = self._cooldowns.get(provider)
        if current is None or current[0] < until_ms:
            self._cooldowns[provider] = (until_ms, quota, self._clock())

    def select(self, key_digest: str, now_ms: int) -> Selection | None:
        """A selection from the agent's snapshot, or None if it has none fresh enough."""
        entry = self._snapshots.entry(key_digest, self._max_staleness_s)
        if entry is None:
            return None
        recorded, last = entry
        eligible = []
        quota_wait = other_wait = 0
        for member in parse_members(last.members):
            until, quota = member.unavailable_until_ms, member.quota
            local = self._cooldowns.get(member.name)
            if local is not None and local[0] > until and not (local[1] and local[2] < recorded):
                until, quota = local[0], local[1]
            if until <= now_ms:
                eligible.append(member)
            elif quota:
                quota_wait = until if not quota_wait else min(quota_wait, until)
            else:
                other_wait = until if not other_wait else min(other_wait, until)
        if eligible and last.strategy != "primary-first":
            turn = self._turns.get(key_digest, 0)
            if len(self._turns) >= self._snapshots.max_agents and key_digest not in self._turns:
                self._turns.clear()  # bounded like the snapshots; a rotation restarting is harmless
            self._turns[key_digest] = turn + 1
            start = turn % len(eligible)
            eligible = eligible[start:] + eligible[:start]
            if last.strategy == "quota-aware":
                eligible.sort(key=lambda m: m.pressure)  # stable: the rotation breaks ties
        # Priorities (select.lua): burn_first, then normal, preserve members last.
        eligible.sort(key=lambda m: m.rank)
        limit = min(last.pool_size, self._max_attempts)
        return Selection(
            agent_id=last.agent_id,
            strategy=last.strategy,
            pool_version=last.pool_version,
            pool_size=last.pool_size,
            candidates=tuple(
                Candidate(
                    m.name,
                    m.account_id,
                    m.token_tag,
                    m.access_expires_at,
                    m.credential_version,
                    probe=False,
                    failures=0,
                )
                for m in eligible[:limit]
            ),
            quota_wait_ms=quota_wait,
            other_wait_ms=other_wait,
            inactive=last.inactive,
            fallback=True,
        )
