"""Per model version metrics, read from ModelStats at scrape time (nothing runs per request here)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from inferd.repository.manager import LoadedModel, ModelRepository
from inferd.scheduler.histogram import Histogram

# Batch sizes are exact in ModelStats.batch; these are only the buckets they are reported in.
BATCH_SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LABELS = ["model", "version"]
_NS = 1e9


def seconds_buckets(histogram: Histogram) -> list[tuple[str, float]]:
    cumulative = histogram.cumulative()
    bounds = [repr(bound / _NS) for bound in histogram.bounds] + ["+Inf"]
    return list(zip(bounds, map(float, cumulative), strict=True))


def batch_size_buckets(executions_by_size: dict[int, int]) -> list[tuple[str, float]]:
    buckets = []
    for bound in BATCH_SIZE_BOUNDS:
        buckets.append((str(bound), float(sum(n for size, n in executions_by_size.items() if size <= bound))))
    buckets.append(("+Inf", float(sum(executions_by_size.values()))))
    return buckets


def executions_by_size(model: LoadedModel) -> dict[int, int]:
    return {size: stats.compute_infer.count for size, stats in model.stats.batch.items()}


class ModelCollector(Collector):
    """Requests, latency/queue/compute/batch-size histograms, counts, pending, cache and cost."""

    def __init__(self, repository: ModelRepository, price_per_hour: float | None) -> None:
        self._repository = repository
        self._price_per_second = None if price_per_hour is None else price_per_hour / 3600

    def collect(self) -> Iterable[Metric]:
        families = _Families(self._price_per_second is not None)
        loaded = 0
        for entry in self._repository.entries():
            if not entry.versions:
                families.ready.add_metric([entry.name, ""], 0)
            for version, model in entry.versions.items():
                loaded += 1
                families.ready.add_metric([entry.name, version], 1 if entry.ready else 0)
                self._add_model(families, model)
        families.loaded.add_metric([], loaded)
        yield from families

    def _add_model(self, f: _Families, model: LoadedModel) -> None:
        labels = [model.name, model.version]
        stats = model.stats
        f.success.add_metric(labels, stats.success.count)
        for kind, count in sorted(stats.failures.items()):
            f.failure.add_metric([*labels, kind], count)
        f.latency.add_metric(labels, seconds_buckets(stats.latency), stats.success.ns / _NS)
        f.queue.add_metric(labels, seconds_buckets(stats.queue_time), stats.queue.ns / _NS)
        f.compute.add_metric(labels, seconds_buckets(stats.compute_time), stats.busy.ns / _NS)
        f.batch.add_metric(labels, batch_size_buckets(executions_by_size(model)), stats.inference_count)
        f.inferences.add_metric(labels, stats.inference_count)
        f.executions.add_metric(labels, stats.execution_count)
        f.pending.add_metric(labels, model.batcher.pending)
        f.cache_hits.add_metric(labels, stats.cache_hit.count)
        f.cache_misses.add_metric(labels, stats.cache_miss.count)
        busy_s = stats.busy.ns / _NS
        f.busy.add_metric(labels, busy_s)
        if stats.load_rss_bytes is not None:
            f.memory.add_metric(labels, stats.load_rss_bytes)
        if self._price_per_second is not None and f.cost is not None and f.cost_per_1000 is not None:
            cost = busy_s * self._price_per_second
            f.cost.add_metric(labels, cost)
            if stats.inference_count:
                f.cost_per_1000.add_metric(labels, cost / stats.inference_count * 1000)


class _Families:
    """The metric families of one scrape, filled model by model."""

    def __init__(self, with_cost: bool) -> None:
        self.ready = GaugeMetricFamily(
            "inferd_model_ready", "1 when the model version is loaded and serving", labels=_LABELS
        )
        self.loaded = GaugeMetricFamily("inferd_models_loaded", "Model versions loaded")
        self.success = CounterMetricFamily(
            "inferd_request_success", "Inference requests that succeeded", labels=_LABELS
        )
        self.failure = CounterMetricFamily(
            "inferd_request_failure",
            "Inference requests that failed, by error kind",
            labels=[*_LABELS, "kind"],
        )
        self.latency = HistogramMetricFamily(
            "inferd_request_duration_seconds",
            "End-to-end latency of successful requests in the data plane",
            labels=_LABELS,
        )
        self.queue = HistogramMetricFamily(
            "inferd_queue_duration_seconds", "Time requests waited in the batcher queue", labels=_LABELS
        )
        self.compute = HistogramMetricFamily(
            "inferd_compute_duration_seconds",
            "Time per execution (merge inputs, run, split outputs)",
            labels=_LABELS,
        )
        self.batch = HistogramMetricFamily(
            "inferd_batch_size", "Rows per execution (sum: inferences)", labels=_LABELS
        )
        self.inferences = CounterMetricFamily(
            "inferd_inferences", "Rows inferred (a batched request counts each row)", labels=_LABELS
        )
        self.executions = CounterMetricFamily("inferd_executions", "Model executions", labels=_LABELS)
        self.pending = GaugeMetricFamily(
            "inferd_pending_requests", "Requests queued or executing", labels=_LABELS
        )
        self.cache_hits = CounterMetricFamily("inferd_cache_hits", "Response cache hits", labels=_LABELS)
        self.cache_misses = CounterMetricFamily(
            "inferd_cache_misses", "Response cache misses", labels=_LABELS
        )
        self.busy = CounterMetricFamily(
            "inferd_busy_seconds", "Time spent executing the model (compute time)", labels=_LABELS
        )
        self.memory = GaugeMetricFamily(
            "inferd_model_load_resident_bytes",
            "Growth of the process's resident memory while the model version was loaded",
            labels=_LABELS,
        )
        self.cost: CounterMetricFamily | None = None
        self.cost_per_1000: GaugeMetricFamily | None = None
        if with_cost:
            self.cost = CounterMetricFamily(
                "inferd_cost_dollars", "Busy time priced at the configured price per hour", labels=_LABELS
            )
            self.cost_per_1000 = GaugeMetricFamily(
                "inferd_cost_per_1000_inferences_dollars",
                "inferd_cost_dollars_total / inferd_inferences_total * 1000",
                labels=_LABELS,
            )

    def __iter__(self) -> Iterator[Metric]:
        for family in vars(self).values():
            if family is not None:
                yield family
