"""The batcher against a small real runtime whose executions can be held, so queues form on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from heldruntime import HeldRuntime

from inferd.errors import ExecutionError, InstanceCrashed, Unavailable
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.stats import ModelStats


def _rows(n: int, value: float = 1.0, width: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.full((n, width), value, np.float32)}


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


async def _hold_first(runtime: HeldRuntime, batcher: Batcher) -> asyncio.Task[dict[str, np.ndarray]]:
    """Start one execution and keep it running, so later requests queue behind it."""
    runtime.gate.clear()
    first = asyncio.create_task(batcher.infer(_rows(1), 1, (2,)))
    await asyncio.get_running_loop().run_in_executor(None, runtime.entered.wait, 5)
    return first


def _batcher(runtime: HeldRuntime, **policy: object) -> tuple[Batcher, ModelStats]:
    stats = ModelStats()
    settings = {"max_batch_size": 8, "dynamic": True, **policy}
    return Batcher(runtime, BatchPolicy(**settings), stats, "held"), stats  # type: ignore[arg-type]


def test_a_lone_request_runs_at_once_and_gets_its_answer() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, stats = _batcher(runtime, max_queue_delay_ns=10**12)
        result = await batcher.infer(_rows(1, 3.0), 1, (2,))
        np.testing.assert_array_equal(result["y"], [[6.0, 6.0]])
        assert runtime.batches == [1]
        assert (stats.execution_count, stats.inference_count) == (1, 1)

    _run(scenario)


def test_requests_queued_behind_a_busy_instance_run_as_one_batch() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, stats = _batcher(runtime)
        first = await _hold_first(runtime, batcher)
        waiting = [asyncio.create_task(batcher.infer(_rows(1, float(i)), 1, (2,))) for i in range(5)]
        await asyncio.sleep(0)
        runtime.gate.set()
        await first
        results = await asyncio.gather(*waiting)
        for i, result in enumerate(results):
            np.testing.assert_array_equal(result["y"], [[2.0 * i, 2.0 * i]])
        assert runtime.batches == [1, 5]
        assert stats.execution_count == 2 and stats.inference_count == 6
        assert sorted(stats.batch) == [1, 5]

    _run(scenario)


def test_batches_never_exceed_max_batch_size_rows_nor_split_a_request() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime)
        first = await _hold_first(runtime, batcher)
        waiting = [asyncio.create_task(batcher.infer(_rows(3), 3, (2,))) for _ in range(3)]
        await asyncio.sleep(0)
        runtime.gate.set()
        await asyncio.gather(first, *waiting)
        assert runtime.batches == [1, 6, 3]

    _run(scenario)


def test_requests_with_different_non_batch_shapes_are_not_merged() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime)
        first = await _hold_first(runtime, batcher)
        narrow = [asyncio.create_task(batcher.infer(_rows(1, width=2), 1, (2,))) for _ in range(2)]
        wide = [asyncio.create_task(batcher.infer(_rows(1, width=3), 1, (3,))) for _ in range(2)]
        await asyncio.sleep(0)
        runtime.gate.set()
        await first
        for task in narrow:
            assert (await task)["y"].shape == (1, 2)
        for task in wide:
            assert (await task)["y"].shape == (1, 3)
        assert runtime.batches == [1, 2, 2]

    _run(scenario)


def test_a_failing_request_inside_a_batch_fails_alone() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime)
        first = await _hold_first(runtime, batcher)
        good_before = asyncio.create_task(batcher.infer(_rows(1, 1.0), 1, (2,)))
        bad = asyncio.create_task(batcher.infer(_rows(1, -1.0), 1, (2,)))
        good_after = asyncio.create_task(batcher.infer(_rows(2, 4.0), 2, (2,)))
        await asyncio.sleep(0)
        runtime.gate.set()
        await first
        np.testing.assert_array_equal((await good_before)["y"], [[2.0, 2.0]])
        np.testing.assert_array_equal((await good_after)["y"], [[8.0, 8.0], [8.0, 8.0]])
        with pytest.raises(ExecutionError, match="negative input"):
            await bad
        # The model keeps serving after the failure.
        np.testing.assert_array_equal((await batcher.infer(_rows(1, 5.0), 1, (2,)))["y"], [[10.0, 10.0]])

    _run(scenario)


class _CrashingRuntime(HeldRuntime):
    """A worker process that dies on negative inputs (as ProcessRuntime reports it)."""

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (inputs["x"] < 0).any():
            self.batches.append(inputs["x"].shape[0])
            raise InstanceCrashed("the worker process of instance 0 died with SIGKILL")
        return super().run(instance, inputs)


def test_a_crashed_instance_fails_its_whole_batch_without_rerunning_each_request() -> None:
    async def scenario() -> None:
        runtime = _CrashingRuntime()
        batcher, _ = _batcher(runtime)
        first = await _hold_first(runtime, batcher)
        batch = [asyncio.create_task(batcher.infer(_rows(1, v), 1, (2,))) for v in (1.0, -1.0, 2.0)]
        await asyncio.sleep(0)
        runtime.gate.set()
        await first
        for task in batch:
            with pytest.raises(InstanceCrashed, match="died with SIGKILL"):
                await task
        assert runtime.batches == [1, 3]  # one crash, no request rerun alone
        np.testing.assert_array_equal((await batcher.infer(_rows(1, 5.0), 1, (2,)))["y"], [[10.0, 10.0]])

    _run(scenario)


def test_without_dynamic_batching_every_request_runs_alone() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime, dynamic=False)
        first = await _hold_first(runtime, batcher)
        waiting = [asyncio.create_task(batcher.infer(_rows(1), 1, (2,))) for _ in range(3)]
        await asyncio.sleep(0)
        runtime.gate.set()
        await asyncio.gather(first, *waiting)
        assert runtime.batches == [1, 1, 1, 1]

    _run(scenario)


def test_a_second_instance_takes_work_while_the_first_is_busy() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime(instances=2)
        batcher, _ = _batcher(runtime)
        first = await _hold_first(runtime, batcher)
        runtime.entered.clear()
        second = asyncio.create_task(batcher.infer(_rows(1), 1, (2,)))
        # The second request enters the runtime while the first still holds its instance.
        entered = await asyncio.get_running_loop().run_in_executor(None, runtime.entered.wait, 5)
        assert entered and batcher.pending == 2
        runtime.gate.set()
        await asyncio.gather(first, second)
        assert runtime.batches == [1, 1]

    _run(scenario)


def test_close_finishes_queued_work_then_refuses_new_requests() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime)
        first = await _hold_first(runtime, batcher)
        queued = asyncio.create_task(batcher.infer(_rows(1, 2.0), 1, (2,)))
        await asyncio.sleep(0)
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0)
        runtime.gate.set()
        await closing
        np.testing.assert_array_equal((await queued)["y"], [[4.0, 4.0]])
        await first
        with pytest.raises(Unavailable):
            await batcher.infer(_rows(1), 1, (2,))

    _run(scenario)


def test_a_cancelled_request_does_not_block_the_queue() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime)
        first = await _hold_first(runtime, batcher)
        abandoned = asyncio.create_task(batcher.infer(_rows(1), 1, (2,)))
        kept = asyncio.create_task(batcher.infer(_rows(1, 3.0), 1, (2,)))
        await asyncio.sleep(0)
        abandoned.cancel()
        runtime.gate.set()
        await first
        np.testing.assert_array_equal((await kept)["y"], [[6.0, 6.0]])
        assert runtime.batches == [1, 1]

    _run(scenario)
