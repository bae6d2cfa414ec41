"""Fixed-bucket histograms cheap enough for the request path (one bisect and two additions).

prometheus_client's Histogram takes a lock per observation (about a microsecond); these are plain
Python values updated on the event loop thread only and exported by a collector at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds in nanoseconds: 50 µs to 10 s, roughly 1-2.5-5 per decade. Small models answer in
# tens of microseconds here, so the buckets start far below prometheus_client's default 5 ms.
LATENCY_BOUNDS_NS: tuple[int, ...] = tuple(
    int(us * 1000)
    for us in (
        50, 100, 250, 500,
        1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000,
    )
)  # fmt: skip


class Histogram:
    """Counts per bucket, not cumulative (the exporter accumulates). The count and sum live in the
    Duration each histogram is paired with, so they are not kept twice."""

    __slots__ = ("bounds", "counts")

    def __init__(self, bounds: tuple[int, ...] = LATENCY_BOUNDS_NS) -> None:
        self.bounds = bounds
        # One slot per bound plus the overflow (+Inf) bucket.
        self.counts = [0] * (len(bounds) + 1)

    def observe(self, value: int) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (Prometheus "le").
        self.counts[bisect_left(self.bounds, value)] += 1

    def cumulative(self) -> list[int]:
        """Counts of values <= each bound, then the total (the +Inf bucket)."""
        running = 0
        result = []
        for bucket in self.counts:
            running += bucket
            result.append(running)
        return result
