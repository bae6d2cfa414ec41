"""Triton-style inference statistics for one model version; updated on the event loop thread only."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from inferd.scheduler.histogram import LATENCY_BOUNDS_NS, Histogram


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchSizeStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class ModelStats:
    """Counters behind the statistics extension; every duration is in nanoseconds."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    cache_hit: Duration = field(default_factory=Duration)
    cache_miss: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    # Beyond Triton's statistics (so not in as_dict, whose schema clients check): for metrics and logs.
    rejected_queue_full: int = 0
    deadline_exceeded: int = 0
    # Requests dropped unexecuted because their caller went away while they waited.
    cancelled: int = 0
    # Executions that ran past the model's execution timeout (their requests failed with 504).
    execution_timeouts: int = 0
    # Executions run on the event-loop thread (BatchPolicy.inline_max_ns); the rest ran on a worker.
    inline_executions: int = 0
    # Requests refused (503) because they would miss dynamic_batching.target_p99_ms under overload.
    shed: int = 0
    # Requests refused (503) before decoding because the event loop lagged past the target
    # (inferd/dataplane/loop_shedding.py); not counted in ``shed``, which is the batcher's.
    shed_frontend: int = 0
    cache_errors: int = 0
    batch: dict[int, BatchSizeStats] = field(default_factory=dict)
    # Prometheus histograms (inferd/metrics), each paired with the Duration holding its count and sum:
    # end-to-end latency of successful requests (success), queue time per request (queue), compute
    # time per execution (busy: input + infer + output, counted once per execution).
    latency: Histogram = field(default_factory=Histogram)
    queue_time: Histogram = field(default_factory=Histogram)
    compute_time: Histogram = field(default_factory=Histogram)
    busy: Duration = field(default_factory=Duration)
    # Failed requests by ErrorKind value; the values add up to ``fail.count``.
    failures: dict[str, int] = field(default_factory=dict)
    # Growth of the process's resident memory while the model was loaded (None where unknown).
    load_rss_bytes: int | None = None

    # The two per-request recorders are inlined by hand: each call here is on every request's path.
    def record_success(self, ns: int) -> None:
        success = self.success
        success.count += 1
        success.ns += ns
        self.latency.counts[bisect_left(LATENCY_BOUNDS_NS, ns)] += 1

    def record_queue(self, ns: int) -> None:
        queue = self.queue
        queue.count += 1
        queue.ns += ns
        self.queue_time.counts[bisect_left(LATENCY_BOUNDS_NS, ns)] += 1

    def record_failure(self, ns: int, kind: str) -> None:
        self.fail.add(ns)
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def record_execution(
        self, rows: int, requests: int, input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        """One execution of ``rows`` rows gathered from ``requests`` requests."""
        self.execution_count += 1
        self.inference_count += rows
        # Triton counts compute durations once per request; batch_stats once per execution.
        self.compute_input.add(input_ns * requests, requests)
        self.compute_infer.add(infer_ns * requests, requests)
        self.compute_output.add(output_ns * requests, requests)
        busy_ns = input_ns + infer_ns + output_ns
        self.busy.add(busy_ns)
        self.compute_time.observe(busy_ns)
        per_size = self.batch.get(rows)
        if per_size is None:
            per_size = self.batch[rows] = BatchSizeStats()
        per_size.compute_input.add(input_ns)
        per_size.compute_infer.add(infer_ns)
        per_size.compute_output.add(output_ns)

    def as_dict(self) -> dict[str, object]:
        return {
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                name: getattr(self, name).as_dict()
                for name in (
                    "success",
                    "fail",
                    "queue",
                    "compute_input",
                    "compute_infer",
                    "compute_output",
                    "cache_hit",
                    "cache_miss",
                )
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": stats.compute_input.as_dict(),
                    "compute_infer": stats.compute_infer.as_dict(),
                    "compute_output": stats.compute_output.as_dict(),
                }
                for size, stats in sorted(self.batch.items())
            ],
        }
