"""How one model version batches: the policy the repository derives from its configuration."""

from __future__ import annotations

from dataclasses import dataclass

from inferd.scheduler.sequence_plan import SequencePlan


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """``max_batch_size`` 0: the model has no batch dimension and every request runs alone."""

    max_batch_size: int
    dynamic: bool = False
    max_queue_delay_ns: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    # Requests allowed to wait at once (0: unbounded); beyond it a request is refused with 503 at once.
    max_queue_size: int = 0
    # A lone request on an idle model runs on the event-loop thread when executions of its shape were
    # measured to take at most this long; 0: every execution runs on a worker thread; INLINE_AUTO: a
    # bound derived from the measured hop (inferd/scheduler/lone.py).
    inline_max_ns: int = 0
    # An execution running longer fails its requests and its instance is replaced; 0: no limit.
    execution_timeout_ns: int = 0
    # close() waits this long for queued and running work, then fails the rest; 0: no limit.
    drain_timeout_ns: int = 0
    # A stateful model's sequence batching (inferd/scheduler/sequence_batcher.py); None: this batcher.
    sequence: SequencePlan | None = None
    # dynamic_batching.target_p99_ms: the delay and batch cap adapt to hold it, and requests that
    # would miss it are shed (inferd/scheduler/adaptive.py); max_queue_delay_ns is then a ceiling.
    target_p99_ns: int = 0

    @property
    def merges(self) -> bool:
        return self.dynamic and self.max_batch_size > 0
