"""The store breaker, the snapshot LRU and local routing, on a fake clock."""

from __future__ import annotations

from collections import Counter

from codexpool_router.failopen import BreakerState, LocalRouting, Snapshots, StoreBreaker
from codexpool_shared.store.selection import Selection


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _selection(strategy: str = "round-robin", **members: tuple[int, int, float]) -> Selection:
    """Members by name: (unavailable until ms, quota flag, pressure), in pool order."""
    rows = [
        [name, f"acc-{name}", f"env-{name}", "", 1, until, quota, pressure, 1]
        for name, (until, quota, pressure) in members.items()
    ]
    return Selection(
        agent_id="agent",
        strategy=strategy,  # type: ignore[arg-type]
        pool_version=1,
        pool_size=len(rows) + 1,  # one inactive member
        candidates=(),
        quota_wait_ms=0,
        other_wait_ms=0,
        inactive=1,
        members=rows,
    )


def state(breaker: StoreBreaker) -> str:
    return breaker.state  # through a call, so that mypy does not narrow it between asserts


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    clock = Clock()
    seen: list[BreakerState] = []
    breaker = StoreBreaker(3, 1.0, on_change=seen.append, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    breaker.success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert state(breaker) == "open"
    assert not breaker.allow() and not breaker.probe_due()
    clock.now += 1.0
    assert breaker.probe_due()
    assert state(breaker) == "half_open"
    assert not breaker.allow() and not breaker.probe_due()  # one probe at a time
    breaker.failure()  # a failed probe re-opens at once
    assert state(breaker) == "open"
    assert not breaker.probe_due()
    clock.now += 1.0
    assert breaker.probe_due()
    breaker.abandon()  # the probe was cancelled: the next caller probes
    assert breaker.probe_due()
    breaker.success()
    assert state(breaker) == "closed" and breaker.allow()
    assert seen == ["open", "half_open", "open", "half_open", "open", "half_open", "closed"]


def test_snapshots_are_bounded_and_expire() -> None:
    clock = Clock()
    snapshots = Snapshots(2, clock=clock)
    a, b, c = _selection(), _selection(), _selection()
    snapshots.record("a", a)
    snapshots.record("b", b)
    snapshots.record("a", a)  # a is now the most recently used
    snapshots.record("c", c)
    assert len(snapshots) == 2
    assert snapshots.entry("b", 10) is None
    assert snapshots.entry("a", 10) == (100.0, a)
    clock.now += 11
    assert snapshots.entry("a", 10) is None
    assert snapshots.entry("c", 11) == (100.0, c)


def test_a_snapshot_is_due_once_it_is_as_old_as_the_refresh_interval() -> None:
    clock = Clock()
    snapshots = Snapshots(10, clock=clock)
    assert snapshots.due("a", 1.0)
    snapshots.record("a", _selection())
    assert not snapshots.due("a", 1.0)
    assert snapshots.due("a", 0.0)  # a refresh interval of 0: every selection
    clock.now += 0.5
    assert not snapshots.due("a", 1.0)
    clock.now += 0.5
    assert snapshots.due("a", 1.0)


def test_local_round_robin_is_even_and_skips_what_was_unavailable() -> None:
    snapshots = Snapshots(10)
    snapshots.record("k", _selection(p1=(0, 0, 0), p2=(10_000, 1, 0), p3=(0, 0, 0), p4=(0, 0, 0)))
    local = LocalRouting(snapshots, max_staleness_s=60, max_attempts=2)
    firsts: Counter[str] = Counter()
    for _ in range(30):
        selection = local.select("k", now_ms=5_000)
        assert selection is not None and selection.fallback
        assert len(selection.candidates) == 2
        assert not any(c.probe for c in selection.candidates)
        assert selection.quota_wait_ms == 10_000 and selection.inactive == 1
        firsts[selection.candidates[0].name] += 1
    assert firsts == {"p1": 10, "p3": 10, "p4": 10}
    # Past its cooldown p2 is back; a local cooldown takes p3 out.
    local.cool_down("p3", 30_000)
    later = [local.select("k", now_ms=20_000) for _ in range(3)]
    assert all(s is not None and s.other_wait_ms == 30_000 for s in later)
    assert sorted(s.candidates[0].name for s in later if s) == ["p1", "p2", "p4"]


def test_local_primary_first_and_quota_aware_orders() -> None:
    snapshots = Snapshots(10)
    snapshots.record("pf", _selection("primary-first", p1=(0, 0, 0), p2=(0, 0, 0)))
    snapshots.record("qa", _selection("quota-aware", p1=(0, 0, 80), p2=(0, 0, 10), p3=(0, 0, 40)))
    local = LocalRouting(snapshots, max_staleness_s=60, max_attempts=3)
    for _ in range(3):
        pf = local.select("pf", now_ms=0)
        qa = local.select("qa", now_ms=0)
        assert pf is not None and qa is not None
        assert [c.name for c in pf.candidates] == ["p1", "p2"]
        assert [c.name for c in qa.candidates] == ["p2", "p3", "p1"]
    local.cool_down("p1", 1_000, quota=True)
    pf = local.select("pf", now_ms=0)
    assert pf is not None and [c.name for c in pf.candidates] == ["p2"]
    assert pf.quota_wait_ms == 1_000


def test_an_agent_not_seen_or_seen_too_long_ago_has_no_local_selection() -> None:
    clock = Clock()
    snapshots = Snapshots(10, clock=clock)
    local = LocalRouting(snapshots, max_staleness_s=300, max_attempts=3)
    assert local.select("k", now_ms=0) is None
    snapshots.record("k", _selection(p1=(0, 0, 0)))
    clock.now += 300
    assert local.select("k", now_ms=0) is not None
    clock.now += 1
    assert local.select("k", now_ms=0) is None


def test_a_local_quota_cooldown_yields_to_a_later_snapshot_a_fault_cooldown_does_not() -> None:
    """Issue 19: the store ends a quota cooldown on fresh quota; a snapshot Redis answered
    after this replica's own 429 says so, and fail-open routing must not keep the member out
    on the stale local cooldown. A local fault cooldown is this replica's alone and stands."""
    clock = Clock()
    snapshots = Snapshots(10, clock=clock)
    local = LocalRouting(snapshots, max_staleness_s=60, max_attempts=3, clock=clock)
    snapshots.record("k", _selection(p1=(0, 0, 0), p2=(0, 0, 0)))
    local.cool_down("p1", 90_000, quota=True)
    local.cool_down("p2", 90_000)
    clock.now += 1
    held = local.select("k", now_ms=1_000)
    assert held is not None and held.candidates == ()
    assert (held.quota_wait_ms, held.other_wait_ms) == (90_000, 90_000)
    snapshots.record("k", _selection(p1=(0, 0, 0), p2=(0, 0, 0)))  # the store cleared p1
    after = local.select("k", now_ms=1_000)
    assert after is not None and [c.name for c in after.candidates] == ["p1"]
    assert after.other_wait_ms == 90_000
