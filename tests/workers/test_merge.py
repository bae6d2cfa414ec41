"""Sums over workers: Triton statistics, status-page data and Prometheus text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from inferd.workers.merge import merge_documents, merge_metrics


def _stats(success: int, last: int, batches: dict[int, int]) -> dict[str, object]:
    return {
        "name": "m",
        "version": "1",
        "last_inference": last,
        "inference_count": success,
        "inference_stats": {"success": {"count": success, "ns": success * 10}},
        "batch_stats": [
            {"batch_size": b, "compute_infer": {"count": n, "ns": n}} for b, n in batches.items()
        ],
    }


def test_statistics_add_up_and_keep_the_latest_inference_time() -> None:
    merged = merge_documents([[_stats(3, 100, {1: 3})], [_stats(5, 90, {1: 1, 4: 1})]])
    assert merged == [
        {
            "name": "m",
            "version": "1",
            "last_inference": 100,
            "inference_count": 8,
            "inference_stats": {"success": {"count": 8, "ns": 80}},
            "batch_stats": [
                {"batch_size": 1, "compute_infer": {"count": 4, "ns": 4}},
                {"batch_size": 4, "compute_infer": {"count": 1, "ns": 1}},
            ],
        }
    ]


def test_generation_figures_add_up_and_keep_their_bucket_bounds() -> None:
    def figures(first: int, active: int) -> dict[str, object]:
        histogram = {"count": first, "ns": first * 5, "bounds_ns": [1000, 2000], "counts": [first, 0, 0]}
        return {
            "name": "g",
            "version": "1",
            "generation": {"time_to_first_token": histogram, "sequences_active": active},
        }

    merged = merge_documents([[figures(2, 1)], [figures(3, 4)]])
    assert merged[0]["generation"] == {
        "time_to_first_token": {"count": 5, "ns": 25, "bounds_ns": [1000, 2000], "counts": [5, 0, 0]},
        "sequences_active": 5,
    }


def test_status_page_rows_merge_by_model_and_a_worker_not_ready_shows() -> None:
    a = {
        "time_s": 5.0,
        "latency_bounds_s": [0.1, 1.0],
        "models": [{"name": "m", "version": "1", "state": "READY", "latency_buckets": [1, 2, 0]}],
    }
    b = {
        "time_s": 7.0,
        "latency_bounds_s": [0.1, 1.0],
        "models": [{"name": "m", "version": "1", "state": "UNAVAILABLE", "latency_buckets": [0, 1, 1]}],
    }
    merged = merge_documents([a, b])
    assert merged["time_s"] == 7.0 and merged["latency_bounds_s"] == [0.1, 1.0]
    assert merged["models"] == [
        {"name": "m", "version": "1", "state": "UNAVAILABLE", "latency_buckets": [1, 3, 1]}
    ]


_TEXT = """# HELP inferd_request_success_total ok
# TYPE inferd_request_success_total counter
inferd_request_success_total{{model="m",version="1"}} {n}
# HELP inferd_model_ready ready
# TYPE inferd_model_ready gauge
inferd_model_ready{{model="m",version="1"}} {ready}
# HELP lat latency
# TYPE lat histogram
lat_bucket{{le="0.1"}} {n}
lat_bucket{{le="+Inf"}} {n}
lat_count {n}
lat_sum 0.5
# HELP process_start_time_seconds start
# TYPE process_start_time_seconds gauge
process_start_time_seconds {start}
"""


def test_prometheus_counters_and_histograms_sum_ready_is_the_least() -> None:
    text = merge_metrics([_TEXT.format(n=2, ready=1, start=200), _TEXT.format(n=3, ready=0, start=100)])
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }
    labels = (("model", "m"), ("version", "1"))
    assert samples[("inferd_request_success_total", labels)] == 5
    assert samples[("inferd_model_ready", labels)] == 0
    assert samples[("lat_bucket", (("le", "0.1"),))] == 5
    assert samples[("lat_count", ())] == 5 and samples[("lat_sum", ())] == 1.0
    assert samples[("process_start_time_seconds", ())] == 100


def test_adaptive_batching_choices_are_the_largest_and_sheds_add_up() -> None:
    def row(cap: int, delay_ms: float, shed: int, rate: float) -> dict[str, object]:
        chosen = {
            "target_p99_ms": 20,
            "queue_delay_ms": delay_ms,
            "batch_cap": cap,
            "arrival_rate_per_s": rate,
        }
        return {"models": [{"name": "m", "version": "1", "shed": shed, "adaptive_batching": chosen}]}

    merged = merge_documents([row(16, 0.5, 2, 100.0), row(24, 0.25, 3, 50.0)])
    assert merged["models"][0]["shed"] == 5
    assert merged["models"][0]["adaptive_batching"] == {
        "target_p99_ms": 20,
        "queue_delay_ms": 0.5,
        "batch_cap": 24,
        "arrival_rate_per_s": 150.0,
    }
    text = (
        "# HELP inferd_adaptive_batch_cap cap\n# TYPE inferd_adaptive_batch_cap gauge\n"
        'inferd_adaptive_batch_cap{{model="m",version="1"}} {cap}\n'
    )
    merged_text = merge_metrics([text.format(cap=16), text.format(cap=24)]).decode()
    assert 'inferd_adaptive_batch_cap{model="m",version="1"} 24.0' in merged_text
