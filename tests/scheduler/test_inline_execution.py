"""Inline execution: a lone request on an idle model, measured fast, runs on the event-loop thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
from heldruntime import HeldRuntime

from inferd.errors import ExecutionError
from inferd.scheduler.batcher import ALONE_STREAK, Batcher
from inferd.scheduler.lone import LoneDecision
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.stats import ModelStats

# Far longer than any run of these runtimes: requests this far apart find the model idle long
# enough, and a request queued meanwhile has been run and answered, even on a loaded machine.
IDLE_S = 0.1


def _rows(n: int, value: float = 1.0) -> dict[str, np.ndarray]:
    return {"x": np.full((n, 2), value, np.float32)}


class _QuietLoop(LoneDecision):
    """The loop as a lone client leaves it. The real lag samples would make these tests depend on
    the machine: a test process descheduled for a few ms (a loaded CI runner) reads as a loaded loop
    and sends a lone request to the worker. The load rule itself is tested in test_lone.py."""

    def loaded(self) -> bool:
        return False


def _batcher(
    runtime: HeldRuntime, inline_max_ns: int, lone: LoneDecision | None = None
) -> tuple[Batcher, ModelStats]:
    stats = ModelStats()
    policy = BatchPolicy(max_batch_size=8, dynamic=True, inline_max_ns=inline_max_ns)
    if lone is None:
        lone = _QuietLoop(policy.inline_max_ns, policy.max_queue_delay_ns)
    return Batcher(runtime, policy, stats, "m", lone), stats  # type: ignore[arg-type]


async def _measured(runtime: HeldRuntime) -> tuple[Batcher, ModelStats]:
    """A batcher that may run inline, whose one-row shape was measured (on the worker) and is idle."""
    batcher, stats = _batcher(runtime, inline_max_ns=10**9)
    await batcher.infer(_rows(1), 1, (2,))
    await asyncio.sleep(IDLE_S)
    return batcher, stats


def _run(scenario: object) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 20))  # type: ignore[operator]


def test_a_measured_fast_shape_runs_on_the_loop_thread_once_the_model_is_idle() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, stats = _batcher(runtime, inline_max_ns=10**9)
        loop_thread = threading.get_ident()
        for value in (1.0, 2.0, 3.0):
            result = await batcher.infer(_rows(1, value), 1, (2,))
            np.testing.assert_array_equal(result["y"], [[2 * value, 2 * value]])
            await asyncio.sleep(IDLE_S)  # a lone client: the model idles between its requests
        # The first run of the shape is measured on the worker; the next ones run inline.
        assert runtime.threads[0] != loop_thread
        assert runtime.threads[1:] == [loop_thread, loop_thread]
        # A shape never measured (two rows) goes to the worker first, like the first one did.
        await batcher.infer(_rows(2), 2, (2,))
        assert runtime.threads[3] != loop_thread
        assert (stats.execution_count, stats.inference_count) == (4, 5)
        assert stats.queue.count == 4 and stats.compute_infer.count == 4

    _run(scenario)


def test_without_a_bound_every_execution_runs_on_a_worker() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime, inline_max_ns=0)
        for _ in range(3):
            await batcher.infer(_rows(1), 1, (2,))
        assert threading.get_ident() not in runtime.threads

    _run(scenario)


def test_a_shape_slower_than_the_bound_stays_on_the_worker() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime(delay_s=0.005)
        batcher, _ = _batcher(runtime, inline_max_ns=1_000_000)  # 1 ms against 5 ms runs
        for _ in range(3):
            await batcher.infer(_rows(1), 1, (2,))
        assert threading.get_ident() not in runtime.threads

    _run(scenario)


def test_under_load_queued_requests_still_batch_on_the_worker() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime, inline_max_ns=10**9)
        await batcher.infer(_rows(1), 1, (2,))  # measured: the shape now qualifies
        await asyncio.sleep(IDLE_S)
        runtime.gate.clear()
        runtime.entered.clear()
        first = asyncio.create_task(batcher.infer(_rows(1), 1, (2,)))
        # Inline: the loop itself is held by the gate, so release it from another thread.
        threading.Timer(0.05, runtime.gate.set).start()
        await first
        assert runtime.threads[-1] == threading.get_ident()

        runtime.gate.clear()
        runtime.entered.clear()
        # Two requests in the same loop turn: the dispatcher sees company and sends one batch.
        together = [asyncio.create_task(batcher.infer(_rows(1, float(i)), 1, (2,))) for i in range(2)]
        await asyncio.get_running_loop().run_in_executor(None, runtime.entered.wait, 5)
        later = [asyncio.create_task(batcher.infer(_rows(1, float(i)), 1, (2,))) for i in range(3)]
        await asyncio.sleep(0)
        runtime.gate.set()
        results = await asyncio.gather(*together, *later)
        for i, result in enumerate(results):
            value = float(i if i < 2 else i - 2)
            np.testing.assert_array_equal(result["y"], [[2 * value, 2 * value]])
        assert runtime.batches[-2:] == [2, 3]
        assert threading.get_ident() not in runtime.threads[-2:]

    _run(scenario)


def test_an_inline_execution_that_fails_fails_only_its_request() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, stats = await _measured(runtime)
        with pytest.raises(ExecutionError, match="negative input"):
            await batcher.infer(_rows(1, -1.0), 1, (2,))
        assert runtime.threads[-1] == threading.get_ident()
        await asyncio.sleep(IDLE_S)
        result = await batcher.infer(_rows(1, 4.0), 1, (2,))
        assert runtime.threads[-1] == threading.get_ident()
        np.testing.assert_array_equal(result["y"], [[8.0, 8.0]])
        assert stats.execution_count == 3

    _run(scenario)


def test_close_after_inline_executions_returns_at_once() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime, inline_max_ns=10**9)
        for _ in range(2):
            await batcher.infer(_rows(1), 1, (2,))
        await asyncio.wait_for(batcher.close(), 5)

    _run(scenario)


def test_requests_back_to_back_keep_the_model_busy_so_they_run_on_the_worker() -> None:
    async def scenario() -> None:
        # Runs long enough that a loaded machine's scheduling delay between one answer and the next
        # request (the idle time the rule reads) stays well under one run (a 20 ms run flaked).
        runtime = HeldRuntime(delay_s=0.15)
        batcher, stats = _batcher(runtime, inline_max_ns=10**9)
        loop_thread = threading.get_ident()
        for _ in range(4):  # each arrives as the previous one finishes: idle for less than one run
            await batcher.infer(_rows(1), 1, (2,))
        assert loop_thread not in runtime.threads
        await asyncio.sleep(0.6)  # idle for four runs' time: the next lone request runs inline
        await batcher.infer(_rows(1), 1, (2,))
        assert runtime.threads[-1] == loop_thread
        assert stats.inline_executions == 1

    _run(scenario)


class _LoadedLoop(LoneDecision):
    """The loop as the lag measurement would see it under gRPC load: always busy, long company waits."""

    def loaded(self) -> bool:
        return True

    def company_wait_ns(self) -> int:
        return 60 * 10**9


def test_on_a_loaded_loop_lone_arrivals_of_separate_turns_wait_and_share_one_execution() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, stats = _batcher(runtime, inline_max_ns=10**9, lone=_LoadedLoop(10**9))
        tasks = []
        for i in range(8):  # one per loop turn, as grpc.aio hands calls over
            tasks.append(asyncio.create_task(batcher.infer(_rows(1, float(i)), 1, (2,))))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        results = await asyncio.gather(*tasks)
        for i, result in enumerate(results):
            np.testing.assert_array_equal(result["y"], [[2.0 * i, 2.0 * i]])
        # The first waited for company until a full batch (8 rows) was queued: one execution.
        assert runtime.batches == [8] and stats.execution_count == 1
        assert stats.inline_executions == 0

    _run(scenario)


def test_on_a_quiet_loop_a_lone_arrival_does_not_wait() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, _ = _batcher(runtime, inline_max_ns=0)
        runtime.gate.clear()
        first = asyncio.create_task(batcher.infer(_rows(1), 1, (2,)))
        await asyncio.get_running_loop().run_in_executor(None, runtime.entered.wait, 5)
        # The first went to the worker alone at once; the next ones queue behind it and batch.
        later = [asyncio.create_task(batcher.infer(_rows(1), 1, (2,))) for _ in range(3)]
        await asyncio.sleep(0)
        runtime.gate.set()
        await asyncio.gather(first, *later)
        assert runtime.batches == [1, 3]

    _run(scenario)


def _finished_without_suspending(coroutine: Any) -> Any:
    """The coroutine's result if it ran to the end without awaiting anything, else None (then it is
    left suspended for the caller to finish)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    return None


def test_a_request_alone_in_the_server_runs_inline_without_a_loop_turn() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, stats = _batcher(runtime, inline_max_ns=10**9)
        await batcher.infer(_rows(1), 1, (2,), alone=True)  # the first run is measured on the worker
        assert runtime.threads[0] != threading.get_ident()
        await asyncio.sleep(IDLE_S)
        result = _finished_without_suspending(batcher.infer(_rows(1, 3.0), 1, (2,), alone=True))
        assert result is not None, "the lone request waited for a loop turn"
        np.testing.assert_array_equal(result["y"], [[6.0, 6.0]])
        assert runtime.threads[1] == threading.get_ident()
        assert stats.inline_executions == 1 and stats.execution_count == 2
        # Another request in the same loop turn is queued as usual: one inline run per turn.
        second = asyncio.ensure_future(batcher.infer(_rows(1, 5.0), 1, (2,), alone=True))
        np.testing.assert_array_equal((await second)["y"], [[10.0, 10.0]])
        assert stats.execution_count == 3

    _run(scenario)


def test_a_request_not_alone_or_of_an_unmeasured_shape_is_queued() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, stats = await _measured(runtime)
        for rows, alone in ((1, False), (2, True)):  # others in progress; a shape never measured
            coroutine = batcher.infer(_rows(rows), rows, (2,), alone=alone)
            assert _finished_without_suspending(coroutine) is None
            await asyncio.sleep(IDLE_S)  # the queued request runs meanwhile
            with pytest.raises(StopIteration):
                coroutine.send(None)
        assert stats.execution_count == 3

    _run(scenario)


def test_a_failing_request_alone_gets_its_error_at_once() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, stats = await _measured(runtime)
        with pytest.raises(ExecutionError, match="negative input"):
            batcher.infer(_rows(1, -1.0), 1, (2,), alone=True).send(None)
        assert runtime.threads[-1] == threading.get_ident()
        await asyncio.sleep(IDLE_S)
        result = await batcher.infer(_rows(1, 4.0), 1, (2,), alone=True)
        np.testing.assert_array_equal(result["y"], [[8.0, 8.0]])
        assert stats.execution_count == 3

    _run(scenario)


def test_every_few_lone_requests_one_takes_the_queued_path_to_sample_the_loop() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher, stats = await _measured(runtime)
        for _ in range(2):  # the streak starts over after each sample
            for _ in range(ALONE_STREAK):
                assert _finished_without_suspending(batcher.infer(_rows(1), 1, (2,), alone=True)) is not None
                await asyncio.sleep(IDLE_S)
            sampled = batcher.infer(_rows(1), 1, (2,), alone=True)
            assert _finished_without_suspending(sampled) is None  # waits for its dispatch turn
            await asyncio.sleep(IDLE_S)
            with pytest.raises(StopIteration):
                sampled.send(None)
        assert stats.execution_count == 1 + 2 * (ALONE_STREAK + 1)

    _run(scenario)
