"""The batcher's answers to requests it will not run: what the client reads, and what each counts in
the model's statistics. None of these is on the path of a request that runs."""

from __future__ import annotations

import time

from inferd.errors import DeadlineExceeded, Unavailable
from inferd.scheduler.queue import Pending
from inferd.scheduler.stats import ModelStats


def shutting_down(name: str) -> Unavailable:
    return Unavailable(f"model '{name}' is shutting down")


def queue_full(stats: ModelStats, name: str, limit: int) -> Unavailable:
    stats.rejected_queue_full += 1
    return Unavailable(f"model '{name}': exceeds maximum queue size {limit}")


def shed(stats: ModelStats, name: str, target_p99_ns: int, reason: str) -> Unavailable:
    """A request adaptive batching gives up on (inferd/scheduler/adaptive.py)."""
    stats.shed += 1
    target_ms = target_p99_ns / 1e6
    return Unavailable(
        f"model '{name}' is overloaded: request shed, {reason} the {target_ms:g} ms "
        "target (dynamic_batching.target_p99_ms); retry later"
    )


def reject_expired(stats: ModelStats, name: str, item: Pending) -> None:
    """The request's deadline passed while it waited: it is answered, never run."""
    if item.future.done():
        return
    stats.deadline_exceeded += 1
    waited_us = (time.perf_counter_ns() - item.enqueued_ns) // 1000
    item.future.set_exception(
        DeadlineExceeded(f"model '{name}': request timeout expired after {waited_us} us in the queue")
    )


def not_run(name: str) -> Unavailable:
    """The drain timed out before a queued request ran."""
    return Unavailable(f"model '{name}' shut down before it ran")


def not_finished(name: str) -> Unavailable:
    """The drain timed out while the request's execution ran."""
    return Unavailable(f"model '{name}' shut down before its execution finished")
