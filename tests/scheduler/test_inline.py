"""InlineRunner on its own: a bug on the inline path becomes the request's error, on both ways in."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import numpy as np
import pytest
from heldruntime import HeldRuntime

from inferd.errors import ExecutionError
from inferd.scheduler.execution import Executor
from inferd.scheduler.inline import InlineRunner
from inferd.scheduler.lone import LoneDecision
from inferd.scheduler.queue import Outputs, Pending
from inferd.scheduler.stats import ModelStats


def _runner(runtime: HeldRuntime, record_fails: bool = False) -> tuple[InlineRunner, ModelStats]:
    stats = ModelStats()

    def record(*_: object) -> None:
        if record_fails:
            raise RuntimeError("a bug while recording")

    executor = Executor(runtime, True, "m")  # type: ignore[arg-type]
    return InlineRunner(executor, stats, LoneDecision(10**9), record, [0], "m"), stats


def _rows(value: float) -> dict[str, np.ndarray]:
    return {"x": np.full((1, 2), value, np.float32)}


def test_a_request_runs_on_the_calling_thread_and_is_counted() -> None:
    runtime = HeldRuntime()
    runner, stats = _runner(runtime)
    result = runner.run(_rows(2.0), 1, (2,), None, time.perf_counter_ns(), None, None)
    np.testing.assert_array_equal(result["y"], [[4.0, 4.0]])
    assert runtime.threads == [threading.get_ident()]
    assert stats.inline_executions == 1


def test_a_crash_outside_the_model_raises_an_execution_error(caplog: pytest.LogCaptureFixture) -> None:
    runner, _ = _runner(HeldRuntime(), record_fails=True)
    with (
        caplog.at_level(logging.ERROR, logger="inferd.scheduler.inline"),
        pytest.raises(ExecutionError, match="a bug while recording"),
    ):
        runner.run(_rows(1.0), 1, (2,), None, time.perf_counter_ns(), None, None)
    assert "inline execution crashed" in caplog.text


def test_a_queued_request_gets_the_crash_as_its_answer() -> None:
    async def scenario() -> None:
        runner, _ = _runner(HeldRuntime(), record_fails=True)
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        runner.answer(Pending(_rows(1.0), 1, (2,), future, time.perf_counter_ns()))
        with pytest.raises(ExecutionError, match="a bug while recording"):
            await future

    asyncio.run(scenario())


def test_the_model_s_own_error_is_answered_as_it_is() -> None:
    async def scenario() -> None:
        runner, _ = _runner(HeldRuntime())
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        runner.answer(Pending(_rows(-1.0), 1, (2,), future, time.perf_counter_ns()))
        with pytest.raises(ExecutionError, match="negative input"):
            await future

    asyncio.run(scenario())
