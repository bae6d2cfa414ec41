"""Overload and stuck models in the batcher: abandoned requests leave the queue at once, an execution
past its timeout fails and its instance gets a new thread, and close() gives up after the drain bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from heldruntime import StuckRuntime

from inferd.errors import ExecutionTimeout, Unavailable
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.stats import ModelStats


def _row(value: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[value]], np.float32)}


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


async def _stuck(runtime: StuckRuntime, batcher: Batcher) -> asyncio.Task[dict[str, np.ndarray]]:
    task = asyncio.create_task(batcher.infer(_row(-1.0), 1))
    assert await asyncio.get_running_loop().run_in_executor(None, runtime.stuck.wait, 5)
    return task


def test_an_abandoned_request_leaves_the_queue_and_frees_its_place() -> None:
    async def scenario() -> None:
        runtime = StuckRuntime()
        stats = ModelStats()
        batcher = Batcher(runtime, BatchPolicy(max_batch_size=8, max_queue_size=2), stats, "m")
        first = await _stuck(runtime, batcher)
        gone = asyncio.create_task(batcher.infer(_row(5.0), 1))
        kept = asyncio.create_task(batcher.infer(_row(6.0), 1))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        # The queue counts only requests someone still waits for: a new one fits in the freed place.
        later = asyncio.create_task(batcher.infer(_row(7.0), 1))
        await asyncio.sleep(0)
        assert batcher.pending == 3 and stats.cancelled == 1
        runtime.release.set()
        await asyncio.gather(first, kept, later)
        assert 5.0 not in runtime.executed
        assert sorted(runtime.executed) == [-1.0, 6.0, 7.0]
        await batcher.close()

    _run(scenario)


def test_an_execution_past_its_timeout_fails_and_the_model_keeps_serving() -> None:
    async def scenario() -> None:
        runtime = StuckRuntime()
        stats = ModelStats()
        policy = BatchPolicy(max_batch_size=8, execution_timeout_ns=300_000_000)
        batcher = Batcher(runtime, policy, stats, "m")
        stuck = await _stuck(runtime, batcher)
        queued = asyncio.create_task(batcher.infer(_row(3.0), 1))
        with pytest.raises(ExecutionTimeout, match="execution timeout"):
            await stuck
        # The request queued behind the stuck execution runs on the instance's new thread.
        np.testing.assert_array_equal((await queued)["y"], [[6.0]])
        np.testing.assert_array_equal((await batcher.infer(_row(4.0), 1))["y"], [[8.0]])
        assert stats.execution_timeouts == 1
        assert len(set(runtime.threads)) == 2
        # The stuck run returns at last: its result is dropped and nothing breaks.
        runtime.release.set()
        assert await asyncio.get_running_loop().run_in_executor(None, runtime.returned_late.wait, 5)
        await asyncio.sleep(0.05)
        np.testing.assert_array_equal((await batcher.infer(_row(1.0), 1))["y"], [[2.0]])
        await batcher.close()

    _run(scenario)


def test_close_gives_up_on_stuck_work_after_the_drain_timeout() -> None:
    async def scenario() -> None:
        runtime = StuckRuntime()
        policy = BatchPolicy(max_batch_size=8, drain_timeout_ns=300_000_000)
        batcher = Batcher(runtime, policy, ModelStats(), "m")
        stuck = await _stuck(runtime, batcher)
        queued = asyncio.create_task(batcher.infer(_row(3.0), 1))
        await asyncio.sleep(0)
        started = time.monotonic()
        await batcher.close()
        assert time.monotonic() - started < 5
        with pytest.raises(Unavailable, match="shut down before its execution finished"):
            await stuck
        with pytest.raises(Unavailable, match="shut down before it ran"):
            await queued
        runtime.release.set()

    _run(scenario)
