"""MLPerf-style scenarios over one model: single-stream, server, offline, concurrency sweep, SLO search.

- single-stream: one request at a time (closed loop, concurrency 1); the latency distribution.
- server: open-loop Poisson arrivals at each target rate; offered vs achieved rate, latency from each
  request's scheduled time.
- offline: large batches (``batch_size`` rows per request) from a few closed-loop workers; the
  throughput ceiling in inferences/s.
- sweep: closed loop at each concurrency, like perf_analyzer's --concurrency-range.
- SLO search: the highest server-scenario rate whose percentile latency meets a target (slo.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from inferd.bench import endpoint as control
from inferd.bench.load import LoadResult
from inferd.bench.percentiles import LatencySummary, percentile_with_failures
from inferd.bench.runner import LoadSpec, run
from inferd.bench.serverstats import ServerSplit, split
from inferd.bench.slo import Probe, SloSearch, search

# Wraps each measurement, e.g. to show a progress bar: (label, expected seconds) -> context manager.
StepHook = Callable[[str, float], AbstractContextManager[Any]]


@dataclass(frozen=True, slots=True)
class Measurement:
    """One run of one load level, with everything a report shows."""

    scenario: str
    label: str
    rows_per_request: int
    result: LoadResult
    server: ServerSplit | None
    concurrency: int | None = None
    offered_rate: float | None = None

    @property
    def latency(self) -> LatencySummary:
        return LatencySummary.of(self.result.latencies_s)

    @property
    def requests_per_s(self) -> float:
        return self.result.throughput

    @property
    def inferences_per_s(self) -> float:
        return self.result.throughput * self.rows_per_request

    @property
    def error_count(self) -> int:
        return sum(self.result.errors.values())


@dataclass(frozen=True, slots=True)
class Bench:
    """A model on a server plus how to load it; each method runs one scenario."""

    spec: LoadSpec
    rows_per_request: int
    processes: int = 1
    step: StepHook | None = None

    def _measure(self, scenario: str, label: str, spec: LoadSpec, **labels: Any) -> Measurement:
        expected = spec.warmup_s + spec.duration_s
        hook = self.step(label, expected) if self.step else nullcontext()
        with hook:
            before = control.model_statistics(spec.endpoint, spec.model, spec.version)
            result = run(spec, self.processes)
            after = control.model_statistics(spec.endpoint, spec.model, spec.version)
        return Measurement(scenario, label, self.rows_per_request, result, split(before, after), **labels)

    def closed(self, scenario: str, concurrency: int) -> Measurement:
        spec = replace(self.spec, mode="closed", concurrency=concurrency)
        return self._measure(scenario, f"{scenario} c={concurrency}", spec, concurrency=concurrency)

    def open(self, rate: float, scenario: str = "server") -> Measurement:
        spec = replace(self.spec, mode="open", rate=rate)
        return self._measure(scenario, f"{scenario} {rate:g}/s", spec, offered_rate=rate)

    def single_stream(self) -> list[Measurement]:
        return [self.closed("single-stream", 1)]

    def server(self, rates: list[float]) -> list[Measurement]:
        return [self.open(rate) for rate in rates]

    def offline(self, concurrency: int) -> list[Measurement]:
        return [self.closed("offline", concurrency)]

    def sweep(self, concurrencies: list[int]) -> Iterator[Measurement]:
        for concurrency in concurrencies:
            yield self.closed("sweep", concurrency)

    def slo_search(
        self, slo_s: float, percentile: float, start_rate: float | None, **options: Any
    ) -> SloSearch[Measurement]:
        """Bisect the server-scenario rate; without ``start_rate``, start from what one stream does."""
        if start_rate is None:
            probe_spec = replace(
                self.spec,
                mode="closed",
                concurrency=1,
                warmup_s=0.5,
                duration_s=min(2.0, self.spec.duration_s),
            )
            first = run(probe_spec, 1)
            start_rate = max(first.throughput, 1.0)

        def measure(rate: float) -> Probe[Measurement]:
            measurement = self.open(rate, scenario="slo-search")
            result = measurement.result
            latency = percentile_with_failures(result.latencies_s, sum(result.errors.values()), percentile)
            met = int(np.count_nonzero(result.latencies_s <= slo_s))
            goodput = met / result.window_s if result.window_s > 0 else 0.0
            return Probe(rate, latency, goodput, measurement)

        return search(measure, slo_s, percentile, start_rate, **options)


def parse_levels(text: str, kind: type[int] | type[float]) -> list[Any]:
    """``1,8,64`` or perf_analyzer's ``start:end:step`` (linear, end included) as a list of levels."""
    try:
        if ":" in text:
            parts = [kind(p) for p in text.split(":")]
            if len(parts) == 2:
                parts.append(kind(1))
            start, end, step = parts
            if step <= 0 or end < start:
                raise ValueError
            count = int(math.floor((end - start) / step + 1e-9)) + 1
            levels = [kind(start + i * step) for i in range(count)]
        else:
            levels = [kind(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"expected a list like 1,8,64 or start:end:step, got '{text}'") from None
    if not levels or min(levels) <= 0:
        raise ValueError(f"levels must be positive, got '{text}'")
    return levels
