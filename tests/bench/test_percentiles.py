"""Nearest-rank percentiles: always a real sample, p100 is the max."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inferd.bench.percentiles import LatencySummary, percentile, percentile_with_failures


def test_nearest_rank_on_1_to_100() -> None:
    values = np.arange(1, 101, dtype=np.float64)
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile(values, 99.9) == 100  # rank ceil(99.9) = 100
    assert percentile(values, 100) == 100
    assert percentile(values, 0.5) == 1


def test_exact_ranks_do_not_round_up() -> None:
    # 99.9 % of 1000 is exactly rank 999, though 99.9 / 100 * 1000 is 999.0000000000001 in floats.
    values = np.arange(1, 1001, dtype=np.float64)
    assert percentile(values, 99.9) == 999
    assert percentile(values, 99) == 990


def test_small_samples() -> None:
    assert percentile(np.array([7.0]), 50) == 7.0
    assert percentile(np.array([1.0, 2.0]), 50) == 1.0
    assert percentile(np.array([1.0, 2.0]), 51) == 2.0
    assert math.isnan(percentile(np.array([], dtype=np.float64), 50))


@pytest.mark.parametrize("p", [0, -1, 100.5])
def test_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile(np.array([1.0]), p)


def test_matches_numpy_inverted_cdf() -> None:
    values = np.sort(np.random.default_rng(1).exponential(size=997))
    for p in (50, 90, 95, 99, 99.9):
        assert percentile(values, p) == np.percentile(values, p, method="inverted_cdf")


def test_failures_count_as_infinitely_slow() -> None:
    latencies = np.full(98, 0.001)
    assert percentile_with_failures(latencies, 0, 99) == 0.001
    assert percentile_with_failures(latencies, 2, 98) == 0.001
    assert percentile_with_failures(latencies, 2, 99) == math.inf


def test_summary_unsorted_input() -> None:
    summary = LatencySummary.of([0.3, 0.1, 0.2, 0.4])
    assert summary.count == 4
    assert summary.minimum == 0.1
    assert summary.maximum == 0.4
    assert summary.mean == pytest.approx(0.25)
    assert summary.percentiles[50.0] == 0.2
    assert summary.percentiles[99.0] == 0.4
    empty = LatencySummary.of([])
    assert empty.count == 0
    assert math.isnan(empty.percentiles[99.0])
