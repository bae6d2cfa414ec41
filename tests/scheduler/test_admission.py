"""Admission control in the batcher: a bounded queue, priorities, and deadlines that drop work unrun."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from heldruntime import xy_signature

from inferd.errors import DeadlineExceeded, Unavailable
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.stats import ModelStats


class GatedRuntime:
    """Returns its input; records each execution's first values; waits while ``gate`` is clear."""

    def __init__(self) -> None:
        self.signature = xy_signature((1,))
        self.instances = 1
        self.executed: list[list[float]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.set()
        self.gate.wait(10)
        self.executed.append(inputs["x"][:, 0].tolist())
        return {"y": inputs["x"]}

    def close(self) -> None:
        pass


def _row(value: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[value]], np.float32)}


async def _started(policy: BatchPolicy) -> tuple[GatedRuntime, Batcher, ModelStats, asyncio.Task[object]]:
    """A batcher whose only instance is busy with request 0.0, so later requests wait in its queue."""
    runtime = GatedRuntime()
    stats = ModelStats()
    batcher = Batcher(runtime, policy, stats, "gated")
    first = asyncio.create_task(batcher.infer(_row(0.0), 1))
    await asyncio.get_running_loop().run_in_executor(None, runtime.entered.wait, 5)
    return runtime, batcher, stats, first


def _run(scenario: object) -> None:
    asyncio.run(asyncio.wait_for(scenario, 20))  # type: ignore[arg-type]


def test_a_full_queue_refuses_at_once_and_counts_it() -> None:
    async def scenario() -> None:
        runtime, batcher, stats, first = await _started(BatchPolicy(max_batch_size=8, max_queue_size=2))
        waiting = [asyncio.create_task(batcher.infer(_row(float(i)), 1)) for i in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="exceeds maximum queue size 2"):
            await batcher.infer(_row(3.0), 1)
        assert stats.rejected_queue_full == 1
        runtime.gate.set()
        await asyncio.gather(first, *waiting)
        assert runtime.executed == [[0.0], [1.0], [2.0]]

    _run(scenario())


def test_higher_priority_requests_are_dequeued_first_fifo_within_a_level() -> None:
    async def scenario() -> None:
        runtime, batcher, _, first = await _started(BatchPolicy(max_batch_size=8))
        order = [(3, 30.0), (1, 10.0), (2, 20.0), (1, 11.0), (3, 31.0), (2, 21.0)]
        waiting = [asyncio.create_task(batcher.infer(_row(v), 1, priority=p)) for p, v in order]
        await asyncio.sleep(0)
        runtime.gate.set()
        await asyncio.gather(first, *waiting)
        assert runtime.executed == [[0.0], [10.0], [11.0], [20.0], [21.0], [30.0], [31.0]]

    _run(scenario())


def test_a_request_whose_deadline_passes_in_the_queue_is_answered_and_never_run() -> None:
    async def scenario() -> None:
        runtime, batcher, stats, first = await _started(BatchPolicy(max_batch_size=8))
        deadline = time.perf_counter_ns() + 1_000_000  # 1 ms
        doomed = asyncio.create_task(batcher.infer(_row(1.0), 1, deadline_ns=deadline))
        patient = asyncio.create_task(batcher.infer(_row(2.0), 1, deadline_ns=deadline + 60 * 10**9))
        # The instance stays busy: the timer, not a dispatch, must answer the doomed request.
        with pytest.raises(DeadlineExceeded, match="timeout expired"):
            await doomed
        assert stats.deadline_exceeded == 1
        runtime.gate.set()
        await asyncio.gather(first, patient)
        assert runtime.executed == [[0.0], [2.0]]
        await batcher.close()

    _run(scenario())


def test_merged_batches_leave_expired_requests_out() -> None:
    async def scenario() -> None:
        runtime, batcher, stats, first = await _started(BatchPolicy(max_batch_size=8, dynamic=True))
        expired = time.perf_counter_ns() - 1  # already past: dropped at dispatch even before its timer
        waiting = [
            asyncio.create_task(batcher.infer(_row(1.0), 1)),
            asyncio.create_task(batcher.infer(_row(2.0), 1, deadline_ns=expired)),
            asyncio.create_task(batcher.infer(_row(3.0), 1)),
        ]
        await asyncio.sleep(0)
        runtime.gate.set()
        results = await asyncio.gather(first, *waiting, return_exceptions=True)
        assert isinstance(results[2], DeadlineExceeded)
        assert sorted(v for batch in runtime.executed for v in batch) == [0.0, 1.0, 3.0]
        assert stats.deadline_exceeded == 1

    _run(scenario())
