from __future__ import annotations

from inferd.scheduler.histogram import Histogram
from inferd.scheduler.stats import ModelStats


def test_a_value_on_a_bound_counts_in_that_bucket_and_overflow_goes_to_inf() -> None:
    histogram = Histogram((10, 20, 30))
    for value in (0, 10, 11, 20, 31, 1000):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 0, 2]
    assert histogram.cumulative() == [2, 4, 4, 6]


def test_stats_keep_histograms_and_triton_counts_in_step() -> None:
    stats = ModelStats()
    stats.record_success(5_000)
    stats.record_success(7_000)
    stats.record_failure(1_000, "invalid_argument")
    stats.record_failure(1_000, "invalid_argument")
    stats.record_failure(2_000, "internal")
    stats.record_queue(300)
    stats.record_execution(rows=3, requests=2, input_ns=10, infer_ns=100, output_ns=20)
    assert sum(stats.latency.counts) == stats.success.count == 2
    assert stats.success.ns == 12_000
    assert stats.failures == {"invalid_argument": 2, "internal": 1}
    assert sum(stats.failures.values()) == stats.fail.count == 3
    assert sum(stats.queue_time.counts) == stats.queue.count == 1
    assert sum(stats.compute_time.counts) == stats.busy.count == stats.execution_count == 1
    assert stats.busy.ns == 130
    assert stats.as_dict()["batch_stats"] == [
        {
            "batch_size": 3,
            "compute_input": {"count": 1, "ns": 10},
            "compute_infer": {"count": 1, "ns": 100},
            "compute_output": {"count": 1, "ns": 20},
        }
    ]
