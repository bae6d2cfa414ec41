"""Sums over workers: Triton statistics and status-page documents (JSON), and Prometheus text.

Counts, durations, histogram buckets and gauges of work (pending requests, memory) add up; a few
values are the same thing seen N times and are not summed (last inference time: the latest; start
time: the earliest; ready and loaded models: the least, so one worker not ready shows; GPU readings:
the largest), and ratios are averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import Metric, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

# Also the largest of what the workers' adaptive batchers chose (docs/adaptive-batching.md).
_LATEST = {"last_inference", "time_s", "queue_delay_ms", "batch_cap"}
_SAME = {"latency_bounds_s", "target_p99_ms", "bounds_ns"}
# Identity of an element in a list of objects: lists of models, of batch sizes.
_IDENTITY = ("name", "version", "batch_size")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


# Gauges that are not a sum over workers: the same state seen N times (the least shows one worker
# behind), one device read by every worker (the largest reading), and ratios (their mean).
_GAUGES: dict[str, Callable[[list[float]], float]] = {
    "inferd_model_ready": min,
    "inferd_models_loaded": min,
    "inferd_drift_features_over_threshold": max,
    "inferd_cost_per_1000_inferences_dollars": _mean,
    "inferd_energy_per_inference_joules": _mean,
    "inferd_adaptive_queue_delay_seconds": max,
    "inferd_adaptive_batch_cap": max,
    "inferd_drift_psi": _mean,
    "inferd_drift_ks": _mean,
}
_MIN_SAMPLES = {"process_start_time_seconds", "process_max_fds"}


def merge_documents(documents: list[Any]) -> Any:
    """One document with every number summed over ``documents`` (all of one shape)."""
    merged = documents[0]
    for document in documents[1:]:
        merged = _merge(merged, document, None)
    return merged


def _merge(a: Any, b: Any, key: str | None) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(a[k], v, k) if k in a else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        return _merge_lists(a, b, key)
    if isinstance(a, bool) or isinstance(b, bool):
        return a and b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if key in _LATEST:
            return max(a, b)
        return a if key in _SAME or key in _IDENTITY else a + b
    if key == "state" and a != b:
        return "UNAVAILABLE"  # not ready on every worker
    return a if a is not None else b


def _merge_lists(a: list[Any], b: list[Any], key: str | None) -> list[Any]:
    if key in _SAME:
        return a
    if all(isinstance(x, dict) for x in (*a, *b)):
        index = {_identity(x): i for i, x in enumerate(a)}
        out = list(a)
        for x in b:
            i = index.get(_identity(x))
            if i is None:
                index[_identity(x)] = len(out)
                out.append(x)
            else:
                out[i] = _merge(out[i], x, None)
        return out
    if len(a) == len(b):
        return [_merge(x, y, None) for x, y in zip(a, b, strict=True)]
    return a


def _identity(element: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(element.get(k) for k in _IDENTITY)


def merge_metrics(texts: Iterable[str], extra: Iterable[Metric] = ()) -> bytes:
    """Prometheus text format 0.0.4 with each sample combined over the workers' ``texts``."""
    families: dict[str, Metric] = {}
    values: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            kept = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            for sample in family.samples:
                key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                if key not in values:
                    kept.samples.append(sample)
                values.setdefault(key, []).append(sample.value)
    for family in families.values():
        family.samples = [
            sample._replace(
                value=_combine(
                    family,
                    sample.name,
                    values[(family.name, sample.name, tuple(sorted(sample.labels.items())))],
                )
            )
            for sample in family.samples
        ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([*families.values(), *extra]))
    return generate_latest(registry)


def _combine(family: Metric, sample_name: str, values: list[float]) -> float:
    if sample_name in _MIN_SAMPLES:
        return min(values)
    if family.type == "info" or family.name.endswith("_info"):
        return values[0]
    if family.type == "gauge" and family.name in _GAUGES:
        return float(_GAUGES[family.name](values))
    if family.name.startswith("inferd_gpu_"):  # the machine's GPUs, read by every worker
        return max(values)
    return float(sum(values))


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)
