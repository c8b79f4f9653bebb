"""The retry budget's arithmetic, on a fake clock."""

from __future__ import annotations

from codexpool_router.retry_budget import RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def retries_allowed(budget: RetryBudget, tries: int) -> int:
    return sum(budget.try_retry() for _ in range(tries))


def test_percentage_of_requests_in_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(20, 0, 10, clock)
    for _ in range(50):
        budget.request()
    assert retries_allowed(budget, 30) == 10


def test_floor_per_second_of_the_window_without_requests() -> None:
    budget = RetryBudget(20, 0.5, 10, Clock())
    assert retries_allowed(budget, 10) == 5


def test_requests_and_retries_slide_out_of_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(50, 0, 5, clock)
    for _ in range(10):
        budget.request()
    assert retries_allowed(budget, 10) == 5
    clock.now += 3
    assert retries_allowed(budget, 1) == 0
    for _ in range(2):
        budget.request()
    assert retries_allowed(budget, 5) == 1
    # The first second leaves the window: its 10 requests and 5 retries go with it.
    clock.now += 2
    assert retries_allowed(budget, 5) == 0
    for _ in range(4):
        budget.request()
    assert retries_allowed(budget, 5) == 2


def test_a_long_pause_empties_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(100, 0, 3, clock)
    for _ in range(5):
        budget.request()
    clock.now += 3600
    assert retries_allowed(budget, 1) == 0
    budget.request()
    assert retries_allowed(budget, 2) == 1
