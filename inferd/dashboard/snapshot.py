"""The JSON the status page polls: models, states and raw counters (the page computes rates and
percentiles from the difference between two polls)."""

from __future__ import annotations

import time
from typing import Any

from inferd.generative.figures import generation_of
from inferd.repository.manager import ModelRepository
from inferd.repository.report import adaptive_status
from inferd.scheduler.histogram import LATENCY_BOUNDS_NS


def snapshot(repository: ModelRepository) -> dict[str, Any]:
    models: list[dict[str, Any]] = []
    for entry in repository.entries():
        if not entry.versions:
            models.append({"name": entry.name, "version": "", "state": "UNAVAILABLE", "reason": entry.reason})
        for version, model in entry.versions.items():
            stats = model.stats
            models.append(
                {
                    "name": entry.name,
                    "version": version,
                    "state": "READY" if entry.ready else "UNAVAILABLE",
                    "reason": entry.reason,
                    "success": stats.success.count,
                    "failure": stats.fail.count,
                    "inferences": stats.inference_count,
                    "executions": stats.execution_count,
                    "pending": model.batcher.pending,
                    "shed": stats.shed + stats.shed_frontend,
                    **adaptive_status(model.batcher),
                    "latency_buckets": list(stats.latency.counts),
                    "batch_sizes": {
                        str(size): per_size.compute_infer.count
                        for size, per_size in sorted(stats.batch.items())
                    },
                    **generation_of(model.runtime),  # a generative version's token figures
                }
            )
    return {
        "time_s": time.monotonic(),
        "latency_bounds_s": [bound / 1e9 for bound in LATENCY_BOUNDS_NS],
        "models": models,
    }
