"""What an engine counts for /metrics and statistics. Latencies are observed on the event loop when an
event reaches its stream: what a client sees, the hop from the engine thread included."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Upper bounds in nanoseconds, 1 ms to 60 s: token latencies of CPU language models.
TOKEN_LATENCY_BOUNDS_NS: tuple[int, ...] = tuple(
    int(ms * 1_000_000) for ms in (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 60_000)
)


class LatencyHistogram:
    """Counts per bucket (the exporter accumulates), their sum in nanoseconds, and the count."""

    __slots__ = ("bounds", "count", "counts", "total_ns")

    def __init__(self, bounds: tuple[int, ...] = TOKEN_LATENCY_BOUNDS_NS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.total_ns = 0

    def observe(self, value_ns: int) -> None:
        self.counts[bisect_left(self.bounds, value_ns)] += 1
        self.count += 1
        self.total_ns += value_ns

    def cumulative(self) -> list[int]:
        running, result = 0, []
        for bucket in self.counts:
            running += bucket
            result.append(running)
        return result


@dataclass(slots=True)
class GenerationStats:
    time_to_first_token: LatencyHistogram = field(default_factory=LatencyHistogram)
    inter_token: LatencyHistogram = field(default_factory=LatencyHistogram)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    steps: int = 0
