"""One generative model version's figures as JSON, for the statistics extension and the status page:
raw counters and gauges (histogram bucket counts, not percentiles), so they add up over worker
processes and a reader computes rates and percentiles from two readings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inferd.generative.stats import LatencyHistogram

if TYPE_CHECKING:  # the engine needs the `generative` extra
    from inferd.generative.engine import Engine


def generation_of(runtime: object) -> dict[str, Any]:
    """``{"generation": figures}`` for a generative runtime, ``{}`` for any other."""
    from inferd.runtimes.generative import GenerativeRuntime  # runtimes import this package

    if not isinstance(runtime, GenerativeRuntime):
        return {}
    return {"generation": generation_figures(runtime.engine)}


def generation_figures(engine: Engine) -> dict[str, Any]:
    stats = engine.stats
    return {
        "time_to_first_token": _histogram(stats.time_to_first_token),
        "inter_token": _histogram(stats.inter_token),
        "prompt_tokens": stats.prompt_tokens,
        "generated_tokens": stats.generated_tokens,
        "sequences_active": engine.active,
        "sequences_waiting": engine.waiting,
        "kv_cache_bytes": engine.kv_bytes,
        "kv_reserved_tokens": engine.reserved_tokens,
        "kv_budget_tokens": engine.options.max_tokens_in_flight,
    }


def _histogram(histogram: LatencyHistogram) -> dict[str, Any]:
    """Triton's {count, ns} plus the buckets: ``counts[i]`` observations up to ``bounds_ns[i]``, the
    last one above every bound."""
    return {
        "count": histogram.count,
        "ns": histogram.total_ns,
        "bounds_ns": list(histogram.bounds),
        "counts": list(histogram.counts),
    }
