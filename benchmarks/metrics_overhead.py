"""What the metrics add to one request's path, in nanoseconds (docs/performance.md, "Metrics").

Compares the per-request recording inferd does now (plain counters and a bisect into bucket counts,
exported at scrape time) with what it did before (counters only) and with prometheus_client's own
Histogram.observe, which takes a lock per call.
Run from the repository root: PYTHONPATH=. python benchmarks/metrics_overhead.py
"""

from __future__ import annotations

import timeit

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client import Histogram as PromHistogram

from inferd.drift.monitor import DriftConfig, DriftMonitor
from inferd.drift.profile import build_profile
from inferd.scheduler.histogram import LATENCY_BOUNDS_NS
from inferd.scheduler.stats import Duration, ModelStats

N = 1_000_000
REPEAT = 5


def _best_ns(statement: object) -> float:
    timer = timeit.Timer(statement)  # type: ignore[arg-type]
    return min(timer.repeat(repeat=REPEAT, number=N)) / N * 1e9


def main() -> None:
    stats = ModelStats()
    before_success = Duration()
    before_queue = Duration()
    prom = PromHistogram(
        "latency_seconds",
        "comparison",
        ["model", "version"],
        registry=CollectorRegistry(),
        buckets=[b / 1e9 for b in LATENCY_BOUNDS_NS],
    ).labels("m", "1")
    access_log = False
    values = [23_000, 47_000, 180_000, 2_000_000]

    def before() -> None:  # what the data plane and batcher recorded per request before
        before_success.add(values[0])
        before_queue.add(values[1])

    def after() -> None:  # what they record now (success latency + queue time)
        stats.record_success(values[0])
        stats.record_queue(values[1])
        if access_log:
            raise AssertionError

    def execution() -> None:  # per execution, not per request
        stats.record_execution(4, 4, 1_000, 20_000, 1_000)

    def prometheus_observe() -> None:
        prom.observe(values[0] / 1e9)
        prom.observe(values[1] / 1e9)

    profile = build_profile({"x": np.random.default_rng(0).normal(size=(1000, 4))}, batched=True)
    monitor = DriftMonitor({"m": profile}, DriftConfig(sample_every=4))
    arrays = {"x": np.zeros((1, 4))}

    def drift_offer() -> None:  # 3 of 4 calls only count; the 4th appends (bounded, drained below)
        monitor.offer("m", arrays)
        if len(monitor._models["m"].pending) > 200:
            monitor._models["m"].pending.clear()

    def drift_offer_unprofiled() -> None:
        monitor.offer("other", arrays)

    rows = [
        ("before: Duration.add x2 (per request)", _best_ns(before)),
        ("now: record_success + record_queue (per request)", _best_ns(after)),
        ("now: record_execution (per execution)", _best_ns(execution)),
        ("prometheus_client Histogram.observe x2 (not used)", _best_ns(prometheus_observe)),
        ("drift offer, model with a profile (incl. bench drain)", _best_ns(drift_offer)),
        ("drift offer, model without a profile", _best_ns(drift_offer_unprofiled)),
    ]
    for name, ns in rows:
        print(f"{name:55s} {ns:8.1f} ns")
    print(f"{'added per request':55s} {rows[1][1] - rows[0][1]:8.1f} ns")


if __name__ == "__main__":
    main()
