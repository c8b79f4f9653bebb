"""The layout helpers of ``codexpool_shared.activity`` that the health service and readers share."""

from __future__ import annotations

import pytest

from codexpool_shared.activity import (
    LATENCY_BOUNDS_MS,
    latency_bucket,
    quantile,
    score_opens_circuit,
)


def test_latency_buckets_are_upper_bound_inclusive() -> None:
    assert latency_bucket(0) == 0
    assert latency_bucket(50) == 0
    assert latency_bucket(50.1) == 1
    assert latency_bucket(3000) == 6
    assert latency_bucket(10**9) == len(LATENCY_BOUNDS_MS)


def test_quantiles_interpolate_inside_the_bucket() -> None:
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    assert quantile(0.5, counts) is None
    counts[2] = 1  # (100, 250]
    counts[6] = 1  # (2000, 3000]
    assert quantile(0.5, counts) == pytest.approx(250)
    assert quantile(0.95, counts) == pytest.approx(2900)
    counts[-1] = 10
    assert quantile(0.99, counts) == LATENCY_BOUNDS_MS[-1]


def test_a_lagging_score_does_not_reopen_a_circuit_a_probe_closed() -> None:
    assert score_opens_circuit(30.0, last_fault_at=100.0, closed_at=None)
    assert not score_opens_circuit(30.0, last_fault_at=100.0, closed_at=150.0)
    assert score_opens_circuit(30.0, last_fault_at=160.0, closed_at=150.0)
    assert not score_opens_circuit(60.0, last_fault_at=160.0, closed_at=150.0)
    assert not score_opens_circuit(None, last_fault_at=None, closed_at=None)
