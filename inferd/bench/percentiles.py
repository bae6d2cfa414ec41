"""Latency percentiles by the nearest-rank rule, the one perf_analyzer and MLPerf report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# The percentiles every report shows.
REPORTED = (50.0, 90.0, 95.0, 99.0, 99.9)


def percentile(sorted_values: npt.NDArray[np.float64], p: float) -> float:
    """The smallest sample with at least ``p`` % of all samples at or below it (nearest rank).

    Unlike interpolation, the answer is always a latency some request really had, and p100 is the max.
    ``sorted_values`` must be sorted ascending; an empty array has no percentiles (NaN).
    """
    if not 0.0 < p <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    n = len(sorted_values)
    if n == 0:
        return math.nan
    # The rank is ceil(p/100 * n); the small epsilon stops 99.9/100 * 1000 = 999.0000000000001 from
    # rounding up a whole rank.
    rank = math.ceil(p / 100.0 * n - 1e-9)
    return float(sorted_values[max(rank, 1) - 1])


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency statistics in seconds over the successful requests of one measurement."""

    count: int
    mean: float
    minimum: float
    maximum: float
    percentiles: dict[float, float]

    @classmethod
    def of(cls, latencies: Sequence[float] | npt.NDArray[np.float64]) -> LatencySummary:
        values = np.sort(np.asarray(latencies, dtype=np.float64))
        if len(values) == 0:
            return cls(0, math.nan, math.nan, math.nan, dict.fromkeys(REPORTED, math.nan))
        return cls(
            count=len(values),
            mean=float(values.mean()),
            minimum=float(values[0]),
            maximum=float(values[-1]),
            percentiles={p: percentile(values, p) for p in REPORTED},
        )


def percentile_with_failures(latencies: npt.NDArray[np.float64], failures: int, p: float) -> float:
    """The ``p`` percentile when each failed request counts as an infinitely slow one.

    An SLO is about every request a user sent: a server that drops or times out requests must not look
    faster than one that answers them late.
    """
    values = np.sort(np.concatenate([latencies, np.full(failures, np.inf)]))
    return percentile(values, p)
