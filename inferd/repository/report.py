"""What the repository reports about its models: Triton's index rows and the lifecycle document."""

from __future__ import annotations

from typing import Any

from inferd.repository.entry import TRITON_STATE, ModelEntry
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.sequence_batcher import SequenceBatcher


def index_rows(on_disk: list[str], models: dict[str, ModelEntry]) -> list[dict[str, Any]]:
    """One row per version (name, version, state, reason); models never loaded get one row."""
    rows: list[dict[str, Any]] = []
    for name in sorted(set(on_disk) | set(models)):
        entry = models.get(name)
        if entry is None:
            rows.append({"name": name, "state": "UNAVAILABLE", "reason": "not loaded"})
            continue
        keys = sorted(set(entry.served) | set(entry.status), key=int)
        if not keys:
            reason = "not loaded (loads on its first request)" if entry.lazy else "not loaded"
            rows.append({"name": name, "state": "UNAVAILABLE", "reason": entry.reason or reason})
        for key in keys:
            if key in entry.served:
                state, reason = "READY", entry.serving_note(key)
            else:
                status = entry.status[key]
                state, reason = TRITON_STATE[status.state], status.reason
            rows.append({"name": name, "version": key, "state": state, "reason": reason})
    return rows


def adaptive_status(batcher: Batcher | SequenceBatcher) -> dict[str, Any]:
    """What the adaptive batcher (target_p99_ms) chose; nothing for other models."""
    adaptive = batcher.adaptive if isinstance(batcher, Batcher) else None
    if adaptive is None:
        return {}
    plan = adaptive.plan
    return {
        "adaptive_batching": {
            "target_p99_ms": adaptive.target_ns / 1e6,
            "queue_delay_ms": plan.delay_ns / 1e6,
            "batch_cap": plan.cap,
            "overloaded": plan.overloaded,
            "arrival_rate_per_s": round(adaptive.rate.per_ns * 1e9, 1),
        }
    }


def lifecycle_document(entry: ModelEntry) -> dict[str, Any]:
    versions: dict[str, Any] = {
        key: {
            "state": "ready",
            "cold_start": model.cold_start.as_dict(),
            "pending_requests": model.batcher.pending,
            **adaptive_status(model.batcher),
            **({"provenance": model.provenance} if model.provenance else {}),
        }
        for key, model in entry.served.items()
    }
    for key, status in entry.status.items():
        if key not in entry.served:
            versions[key] = {"state": status.state.value, "reason": status.reason}
    return {
        "name": entry.name,
        "default_version": entry.default.version if entry.default else None,
        "pinned_version": entry.pinned,
        "versions": versions,
        "rollout": entry.rollout.as_dict() if entry.rollout else None,
        "history": list(entry.history),
        "counters": dict(entry.counters),
        "events": list(entry.events),
    }
