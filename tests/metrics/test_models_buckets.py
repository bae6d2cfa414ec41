from __future__ import annotations

from inferd.metrics.models import batch_size_buckets, seconds_buckets
from inferd.scheduler.histogram import Histogram


def test_seconds_buckets_are_cumulative_and_end_with_inf() -> None:
    histogram = Histogram((1_000, 1_000_000))
    for ns in (500, 1_000, 2_000, 5_000_000):
        histogram.observe(ns)
    assert seconds_buckets(histogram) == [("1e-06", 2.0), ("0.001", 3.0), ("+Inf", 4.0)]


def test_batch_size_buckets_count_executions_at_or_below_each_size() -> None:
    buckets = dict(batch_size_buckets({1: 5, 3: 2, 8: 1, 2000: 1}))
    assert buckets["1"] == 5
    assert buckets["2"] == 5
    assert buckets["4"] == 7
    assert buckets["8"] == 8
    assert buckets["1024"] == 8
    assert buckets["+Inf"] == 9


def test_label_values_are_escaped_so_any_model_name_parses_back() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from inferd.metrics.models import escape_label

    name = 'odd "model" \\ with\nnewline'
    text = f'# TYPE x gauge\nx{{model="{escape_label(name)}"}} 1.0\n'
    (family,) = text_string_to_metric_families(text)
    assert family.samples[0].labels == {"model": name}
