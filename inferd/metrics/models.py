"""Per model version metrics, rendered from ModelStats at scrape time (nothing runs per request here).

The text is formatted here rather than through prometheus_client's metric families: its generic
exposition costs ~15 µs per sample, and a scrape runs on the event loop thread, so with tens of
models it stalled serving for tens of milliseconds (benchmarks/metrics_scrape.py; docs/performance.md).
Label strings are escaped once per model and every line is one f-string.
"""

from __future__ import annotations

from inferd.repository.manager import LoadedModel, ModelRepository
from inferd.runtimes.processes import instance_restarts
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.histogram import Histogram

# Batch sizes are exact in ModelStats.batch; these are only the buckets they are reported in.
BATCH_SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
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


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Family:
    __slots__ = ("lines", "name")

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"]

    def sample(self, labels: str, value: float) -> None:
        self.lines.append(f"{self.name}{{{labels}}} {float(value)!r}\n")

    def histogram(self, labels: str, buckets: list[tuple[str, float]], total: float) -> None:
        name = self.name
        lines = self.lines
        for bound, count in buckets:
            lines.append(f'{name}_bucket{{le="{bound}",{labels}}} {count!r}\n')
        lines.append(f"{name}_count{{{labels}}} {buckets[-1][1]!r}\n")
        lines.append(f"{name}_sum{{{labels}}} {float(total)!r}\n")


def _counter(name: str, help_text: str) -> _Family:
    # As prometheus_client writes text format 0.0.4: the family, its HELP and TYPE all carry _total.
    return _Family(f"{name}_total", "counter", help_text)


class ModelMetrics:
    """Requests, latency/queue/compute/batch-size histograms, counts, pending, cache, memory, cost."""

    def __init__(self, repository: ModelRepository, price_per_hour: float | None) -> None:
        self._repository = repository
        self._price_per_second = None if price_per_hour is None else price_per_hour / 3600

    def render(self) -> str:
        f = _Families(self._price_per_second is not None)
        loaded = 0
        for entry in self._repository.entries():
            model_label = f'model="{escape_label(entry.name)}"'
            for event, count in sorted(entry.counters.items()):
                f.lifecycle.sample(f'{model_label},event="{escape_label(event)}"', count)
            if not entry.versions:
                f.ready.sample(f'model="{escape_label(entry.name)}",version=""', 0)
            for model in entry.versions.values():
                loaded += 1
                self._add_model(f, model, 1 if entry.ready else 0)
        f.loaded.lines.append(f"inferd_models_loaded {float(loaded)!r}\n")
        return "".join(line for family in f.all() for line in family.lines)

    def _add_model(self, f: _Families, model: LoadedModel, ready: int) -> None:
        labels = f'model="{escape_label(model.name)}",version="{escape_label(model.version)}"'
        stats = model.stats
        f.ready.sample(labels, ready)
        f.success.sample(labels, stats.success.count)
        for kind, count in sorted(stats.failures.items()):
            f.failure.sample(f'{labels},kind="{kind}"', count)
        f.latency.histogram(labels, seconds_buckets(stats.latency), stats.success.ns / _NS)
        f.queue.histogram(labels, seconds_buckets(stats.queue_time), stats.queue.ns / _NS)
        f.compute.histogram(labels, seconds_buckets(stats.compute_time), stats.busy.ns / _NS)
        f.batch.histogram(labels, batch_size_buckets(executions_by_size(model)), stats.inference_count)
        f.inferences.sample(labels, stats.inference_count)
        f.executions.sample(labels, stats.execution_count)
        f.pending.sample(labels, model.batcher.pending)
        f.cache_hits.sample(labels, stats.cache_hit.count)
        f.cache_misses.sample(labels, stats.cache_miss.count)
        f.cache_errors.sample(labels, stats.cache_errors)
        f.queue_full.sample(labels, stats.rejected_queue_full)
        f.deadline.sample(labels, stats.deadline_exceeded)
        f.inline.sample(labels, stats.inline_executions)
        f.shed.sample(f'{labels},reason="batcher"', stats.shed)
        f.shed.sample(f'{labels},reason="frontend"', stats.shed_frontend)
        adaptive = model.batcher.adaptive if isinstance(model.batcher, Batcher) else None
        if adaptive is not None:
            f.adaptive_delay.sample(labels, adaptive.plan.delay_ns / _NS)
            f.adaptive_cap.sample(labels, adaptive.plan.cap)
        f.restarts.sample(labels, instance_restarts(model.runtime))
        if stats.load_rss_bytes is not None:
            f.memory.sample(labels, stats.load_rss_bytes)
        busy_s = stats.busy.ns / _NS
        f.busy.sample(labels, busy_s)
        if self._price_per_second is not None:
            cost = busy_s * self._price_per_second
            f.cost.sample(labels, cost)
            if stats.inference_count:
                f.cost_per_1000.sample(labels, cost / stats.inference_count * 1000)


class _Families:
    """The metric families of one scrape, filled model by model, in exposition order."""

    def __init__(self, with_cost: bool) -> None:
        self._with_cost = with_cost
        self.ready = _Family("inferd_model_ready", "gauge", "1 when the model version is loaded and serving")
        self.loaded = _Family("inferd_models_loaded", "gauge", "Model versions loaded")
        self.success = _counter("inferd_request_success", "Inference requests that succeeded")
        self.failure = _counter("inferd_request_failure", "Inference requests that failed, by error kind")
        self.latency = _Family(
            "inferd_request_duration_seconds",
            "histogram",
            "End-to-end latency of successful requests in the data plane",
        )
        self.queue = _Family(
            "inferd_queue_duration_seconds", "histogram", "Time requests waited in the batcher queue"
        )
        self.compute = _Family(
            "inferd_compute_duration_seconds",
            "histogram",
            "Time per execution (merge inputs, run, split outputs)",
        )
        self.batch = _Family("inferd_batch_size", "histogram", "Rows per execution (sum: inferences)")
        self.inferences = _counter("inferd_inferences", "Rows inferred (a batched request counts each row)")
        self.executions = _counter("inferd_executions", "Model executions")
        self.pending = _Family("inferd_pending_requests", "gauge", "Requests queued or executing")
        self.cache_hits = _counter("inferd_cache_hits", "Response cache hits")
        self.cache_misses = _counter("inferd_cache_misses", "Response cache misses")
        self.cache_errors = _counter(
            "inferd_cache_errors", "Response cache backend errors (the request was served without the cache)"
        )
        self.queue_full = _counter(
            "inferd_queue_full_rejections", "Requests refused at once because the model's queue was full"
        )
        self.deadline = _counter(
            "inferd_deadline_expired", "Requests dropped unexecuted because their timeout passed in the queue"
        )
        self.inline = _counter(
            "inferd_inline_executions",
            "Executions run on the event-loop thread (inline_execution_max_us) instead of a worker",
        )
        self.shed = _counter(
            "inferd_requests_shed",
            "Requests refused (503) because they would miss dynamic_batching.target_p99_ms under overload, "
            "by where: the batcher, or the front-end before decoding (event loop lag)",
        )
        self.adaptive_delay = _Family(
            "inferd_adaptive_queue_delay_seconds",
            "gauge",
            "Queue delay the adaptive batcher (target_p99_ms) chose for the oldest request",
        )
        self.adaptive_cap = _Family(
            "inferd_adaptive_batch_cap",
            "gauge",
            "Rows per batch the adaptive batcher (target_p99_ms) allows",
        )
        self.restarts = _counter(
            "inferd_instance_restarts",
            "Worker processes (instance_kind: process) restarted after dying (crash, OOM kill, timeout)",
        )
        self.lifecycle = _counter(
            "inferd_lifecycle_events",
            "Lifecycle decisions per model (loads, load failures, default changes, rollouts, rollbacks, ...)",
        )
        self.memory = _Family(
            "inferd_model_load_resident_bytes",
            "gauge",
            "Growth of the process's resident memory while the model version was loaded",
        )
        self.busy = _counter("inferd_busy_seconds", "Time spent executing the model (compute time)")
        self.cost = _counter("inferd_cost_dollars", "Busy time priced at the configured price per hour")
        self.cost_per_1000 = _Family(
            "inferd_cost_per_1000_inferences_dollars",
            "gauge",
            "inferd_cost_dollars_total / inferd_inferences_total * 1000",
        )

    def all(self) -> list[_Family]:
        families = [
            self.ready,
            self.loaded,
            self.success,
            self.failure,
            self.latency,
            self.queue,
            self.compute,
            self.batch,
            self.inferences,
            self.executions,
            self.pending,
            self.cache_hits,
            self.cache_misses,
            self.cache_errors,
            self.queue_full,
            self.deadline,
            self.inline,
            self.shed,
            self.adaptive_delay,
            self.adaptive_cap,
            self.restarts,
            self.lifecycle,
            self.memory,
            self.busy,
        ]
        if self._with_cost:
            families += [self.cost, self.cost_per_1000]
        return families
