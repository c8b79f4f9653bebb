"""The runway model (``codexpool_shared.forecast``) on hand-made samples."""

from __future__ import annotations

import pytest

from codexpool_shared.forecast import Sample, forecast, provider_forecast

NOW = 1_800_000_000.0
HOUR = 3600.0


def line(
    used0: float, per_hour: float, resets_at: float, n: int = 7, step: float = 60
) -> list[Sample]:
    start = NOW - (n - 1) * step
    return [
        Sample(start + i * step, used0 + per_hour * i * step / HOUR, resets_at, 5 * HOUR)
        for i in range(n)
    ]


def test_burn_rate_and_exhaustion_of_a_steady_line() -> None:
    samples = line(40, 12, NOW + 10 * HOUR)
    found = provider_forecast("p", "primary", samples)
    assert found.burn_percent_per_hour == pytest.approx(12)
    assert found.used_percent == pytest.approx(samples[-1].used)
    assert found.exhausts_at == pytest.approx(NOW + (100 - samples[-1].used) / 12 * HOUR)


def test_too_few_samples_or_a_window_that_just_reset_give_no_figure() -> None:
    assert provider_forecast("p", "primary", line(40, 12, NOW + HOUR, n=2)).exhausts_at is None
    old = line(80, 12, NOW - 60, n=5)  # the previous window
    fresh = line(0, 12, NOW + 5 * HOUR, n=2)
    found = provider_forecast("p", "primary", old + fresh)
    assert (found.burn_percent_per_hour, found.exhausts_at) == (None, None)
    flat = provider_forecast("p", "primary", line(40, 0, NOW + HOUR))
    assert flat.burn_percent_per_hour == pytest.approx(0) and flat.exhausts_at is None


def test_the_pool_pools_its_headroom_and_says_when_it_runs_dry_before_a_reset() -> None:
    a = line(50 - 10 * 6 / 60, 10, NOW + 10 * HOUR)
    b = line(50 - 10 * 6 / 60, 10, NOW + 12 * HOUR)
    found = forecast({"a": {"primary": a, "secondary": []}, "b": {"primary": b, "secondary": []}},
                     ["a", "b"], NOW)  # fmt: skip
    assert found.pool.limited_by == "primary"
    assert found.pool.runway_s == pytest.approx(5 * HOUR)  # 100 % of headroom at 20 %/h
    assert found.pool.before_reset is True


def test_a_reset_before_the_pool_runs_dry_buys_it_time() -> None:
    a = line(50 - 10 * 6 / 60, 10, NOW + 1 * HOUR)
    b = line(50 - 10 * 6 / 60, 10, NOW + 100 * HOUR)
    found = forecast({"a": {"primary": a, "secondary": []}, "b": {"primary": b, "secondary": []}},
                     ["a", "b"], NOW)  # fmt: skip
    # At 1 h: headroom 100 - 20 = 80, plus the 60 % a had used by then = 140. a's next reset
    # (its 5 h window) at 6 h: 140 - 5 * 20 = 40, plus the 50 % a used since = 90: 4.5 h more.
    assert found.pool.runway_s == pytest.approx(10.5 * HOUR)
    assert found.pool.before_reset is False


def test_a_member_without_data_makes_the_pool_unknown() -> None:
    a = line(50, 10, NOW + 10 * HOUR)
    found = forecast({"a": {"primary": a, "secondary": []}}, ["a", "b"], NOW)
    assert (found.pool.runway_s, found.pool.exhausts_at, found.pool.limited_by) == (None,) * 3
    assert [r.provider for r in found.providers] == ["a"]
