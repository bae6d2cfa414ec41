"""Where the server spent each request's time, from two snapshots of the statistics extension.

The statistics endpoint (Triton's, which inferd also serves) keeps cumulative counts and nanoseconds
for queueing and for the input, inference and output phases of compute. The difference between a
snapshot before and one after a run gives the mean per request over that run alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_PHASES = ("success", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True, slots=True)
class ServerSplit:
    """Mean seconds per successful request on the server over one run."""

    requests: int
    executions: int
    inferences: int
    total_s: float
    queue_s: float
    compute_s: float

    @property
    def mean_batch(self) -> float:
        """Rows per model execution: how much the server's dynamic batcher merged."""
        return self.inferences / self.executions if self.executions else 0.0


def _counter(stats: Mapping[str, Any], phase: str) -> tuple[int, int]:
    entry = stats.get("inference_stats", {}).get(phase, {})
    # gRPC's JSON form writes 64-bit integers as strings.
    return int(entry.get("count", 0)), int(entry.get("ns", 0))


def split(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> ServerSplit | None:
    """The per-request split between two snapshots, or None if either is missing or nothing ran."""
    if not before or not after:
        return None
    delta = {}
    for phase in _PHASES:
        count0, ns0 = _counter(before, phase)
        count1, ns1 = _counter(after, phase)
        delta[phase] = (count1 - count0, ns1 - ns0)
    requests = delta["success"][0]
    if requests <= 0:
        return None

    def mean_s(phase: str) -> float:
        count, ns = delta[phase]
        return ns / count / 1e9 if count > 0 else 0.0

    compute = sum(mean_s(p) for p in ("compute_input", "compute_infer", "compute_output"))
    return ServerSplit(
        requests=requests,
        executions=int(after.get("execution_count", 0)) - int(before.get("execution_count", 0)),
        inferences=int(after.get("inference_count", 0)) - int(before.get("inference_count", 0)),
        total_s=mean_s("success"),
        queue_s=mean_s("queue"),
        compute_s=compute,
    )
