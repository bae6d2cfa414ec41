"""Sequence batching's pieces without a server: config checks, the plan against a model's tensors,
request parameters, and the scheduler's timeout, cancellation and shutdown paths on a runtime whose
executions can be held (tests/heldruntime.py). The served behaviour: tests/e2e/test_sequences.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from heldruntime import HeldRuntime

from inferd.errors import ExecutionTimeout, InvalidRequest, ModelLoadError, Unavailable
from inferd.model_config import ModelConfig
from inferd.runtimes.base import Signature
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.sequence_batcher import SequenceBatcher
from inferd.scheduler.sequence_plan import sequence_plan
from inferd.scheduler.sequences import Row, Sequence, Step, feed, step_flags
from inferd.scheduler.stats import ModelStats
from inferd.sequence_config import SequenceBatching
from inferd.types import TensorSpec

SIGNATURE = Signature(
    inputs=(
        TensorSpec("INPUT", "INT32", (1,)),
        TensorSpec("STATE_IN", "FP32", (2,)),
        TensorSpec("START", "INT32", (1,)),
    ),
    outputs=(TensorSpec("OUTPUT", "INT32", (1,)), TensorSpec("STATE_OUT", "FP32", (2,))),
    max_batch_size=4,
)
STATE = {"input_name": "STATE_IN", "output_name": "STATE_OUT", "data_type": "TYPE_FP32", "dims": [2]}
START = {"name": "START", "control": [{"kind": "CONTROL_SEQUENCE_START", "int32_false_true": [0, 1]}]}


def _config(**fields: object) -> SequenceBatching:
    return SequenceBatching.model_validate({"control_input": [START], "state": [STATE], **fields})


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        ({"sequence_batching": {}, "dynamic_batching": {}}, "cannot be combined with dynamic_batching"),
        ({"sequence_batching": {}, "response_cache": True}, "cannot be combined with response_cache"),
        ({"sequence_batching": {"direct": {}, "oldest": {}}}, "give one strategy"),
        (
            {
                "sequence_batching": {
                    "control_input": [{"name": "S", "control": [{"kind": "CONTROL_SEQUENCE_START"}]}]
                }
            },
            "exactly one of int32_false_true",
        ),
        (
            {
                "sequence_batching": {
                    "control_input": [
                        {
                            "name": "C",
                            "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_FP32"}],
                        }
                    ]
                }
            },
            "CORRID data_type must be an integer type or TYPE_STRING",
        ),
        ({"sequence_batching": {"state": [{**STATE, "dims": [-1]}]}}, "fixed shape"),
        (
            {"sequence_batching": {"state": [{**STATE, "initial_state": [{"data_file": "../x"}]}]}},
            "without '..'",
        ),
    ],
)
def test_config_refuses_what_cannot_work(raw: dict[str, object], phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        ModelConfig.model_validate(raw)


def test_plan_hides_control_and_state_tensors_from_clients(tmp_path: Path) -> None:
    plan = sequence_plan(_config(), SIGNATURE, 2, tmp_path)
    assert [s.name for s in plan.served.inputs] == ["INPUT"]
    assert [s.name for s in plan.served.outputs] == ["OUTPUT"]
    assert plan.slots == 8  # direct: 4 rows x 2 instances
    np.testing.assert_array_equal(plan.states[0].initial, [0.0, 0.0])
    oldest = sequence_plan(_config(oldest={"max_candidate_sequences": 3}), SIGNATURE, 2, tmp_path)
    assert oldest.slots == 3


def test_plan_reads_an_initial_state_file_inside_the_model(tmp_path: Path) -> None:
    (tmp_path / "initial_state").mkdir()
    np.array([1.5, -2.0], "<f4").tofile(tmp_path / "initial_state" / "start.bin")
    state = {**STATE, "initial_state": [{"name": "s", "data_file": "start.bin"}]}
    plan = sequence_plan(_config(state=[state]), SIGNATURE, 1, tmp_path)
    np.testing.assert_array_equal(plan.states[0].initial, [1.5, -2.0])
    (tmp_path / "initial_state" / "short.bin").write_bytes(b"\0" * 4)
    state["initial_state"] = [{"name": "s", "data_file": "short.bin"}]
    with pytest.raises(ModelLoadError, match="must hold 8 bytes"):
        sequence_plan(_config(state=[state]), SIGNATURE, 1, tmp_path)


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        ({"control_input": [{**START, "name": "NOPE"}]}, "control input 'NOPE' is not an input"),
        (
            {
                "control_input": [
                    {
                        "name": "START",
                        "control": [{"kind": "CONTROL_SEQUENCE_START", "fp32_false_true": [0, 1]}],
                    }
                ]
            },
            "is INT32 in the model, FP32 in the config",
        ),
        ({"state": [{**STATE, "dims": [3]}]}, "has dims [2] in the model, [3] in the config"),
        ({"state": [{**STATE, "output_name": "MISSING"}]}, "state tensor 'MISSING' is not a tensor"),
    ],
)
def test_plan_names_what_disagrees_with_the_model(
    fields: dict[str, object], phrase: str, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError) as caught:
        sequence_plan(_config(**fields), SIGNATURE, 1, tmp_path)
    assert phrase in caught.value.message


def test_step_flags_read_tritonclient_parameters() -> None:
    flags = step_flags("m", {"sequence_id": "abc", "sequence_start": True, "sequence_end": False})
    assert (flags.sequence_id, flags.start, flags.end, flags.shown) == ("abc", True, False, "'abc'")
    assert step_flags("m", {"sequence_id": 2**64 - 1}).sequence_id == 2**64 - 1
    for parameters in ({}, {"sequence_id": 0}, {"sequence_id": True}, {"sequence_id": 1, "sequence_end": 1}):
        with pytest.raises(InvalidRequest):
            step_flags("m", parameters)


# The scheduler on a stateless plan over HeldRuntime (x -> 2x), whose executions can be held.
def _batcher(runtime: HeldRuntime, **policy: int) -> SequenceBatcher:
    plan = sequence_plan(SequenceBatching(), runtime.signature, runtime.instances, Path("."))
    settings = BatchPolicy(max_batch_size=8, sequence=plan, **policy)
    return SequenceBatcher(runtime, plan, settings, ModelStats(), "held")


def _step(
    batcher: SequenceBatcher, sequence_id: int, value: float, **flags: bool
) -> Awaitable[dict[str, np.ndarray]]:
    inputs = {"x": np.full((1, 2), value, np.float32)}
    return batcher.infer({"sequence_id": sequence_id, **flags}, inputs, 1, (2,))


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


async def _entered(runtime: HeldRuntime) -> None:
    await asyncio.get_running_loop().run_in_executor(None, runtime.entered.wait, 5)


def test_a_step_past_the_execution_timeout_fails_and_its_sequence_goes_on() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher = _batcher(runtime, execution_timeout_ns=200_000_000)
        runtime.gate.clear()
        with pytest.raises(ExecutionTimeout, match="execution_timeout_s"):
            await _step(batcher, 7, 1.0, sequence_start=True)
        runtime.gate.set()  # the abandoned thread returns; its late result is dropped
        result = await _step(batcher, 7, 3.0, sequence_end=True)
        np.testing.assert_array_equal(result["y"], [[6.0, 6.0]])
        await batcher.close()

    _run(scenario)


def test_a_cancelled_step_never_runs_and_its_sequence_stays_live() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher = _batcher(runtime)
        runtime.gate.clear()
        first = asyncio.create_task(_step(batcher, 1, 1.0, sequence_start=True))
        await _entered(runtime)
        waiting = asyncio.create_task(_step(batcher, 2, 5.0, sequence_start=True))
        await asyncio.sleep(0.05)
        waiting.cancel()
        runtime.gate.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert runtime.batches == [1]  # only sequence 1's step ran
        assert batcher.pending == 0 and batcher.live_sequences == 2
        await _step(batcher, 2, 1.0, sequence_end=True)
        await batcher.close()

    _run(scenario)


def test_close_fails_what_the_drain_could_not_finish_and_forgets_the_sequences() -> None:
    async def scenario() -> None:
        runtime = HeldRuntime()
        batcher = _batcher(runtime, drain_timeout_ns=100_000_000)
        runtime.gate.clear()
        running = asyncio.create_task(_step(batcher, 1, 1.0, sequence_start=True))
        await _entered(runtime)
        queued = asyncio.create_task(_step(batcher, 2, 1.0, sequence_start=True))
        await asyncio.sleep(0.05)
        await batcher.close()
        for task in (running, queued):
            with pytest.raises(Unavailable, match="shut down"):
                await task
        assert batcher.live_sequences == 0
        with pytest.raises(Unavailable, match="shutting down"):
            await _step(batcher, 3, 1.0, sequence_start=True)
        runtime.gate.set()

    _run(scenario)


def test_feed_fills_controls_state_and_padding_rows(tmp_path: Path) -> None:
    """A direct execution of rows 1 and 3 of 4: rows 0 and 2 are padding (READY false, zeros)."""
    signature = Signature(
        inputs=(
            TensorSpec("INPUT", "INT32", (1,)),
            TensorSpec("STATE_IN", "FP32", (2,)),
            TensorSpec("START", "INT32", (1,)),
            TensorSpec("END", "BOOL", (1,)),
            TensorSpec("READY", "FP32", (1,)),
            TensorSpec("CORRID", "BYTES", (1,)),
        ),
        outputs=SIGNATURE.outputs,
        max_batch_size=4,
    )
    controls = [
        START,
        {"name": "END", "control": [{"kind": "CONTROL_SEQUENCE_END", "bool_false_true": [False, True]}]},
        {"name": "READY", "control": [{"kind": "CONTROL_SEQUENCE_READY", "fp32_false_true": [0, 1]}]},
        {"name": "CORRID", "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_STRING"}]},
    ]
    plan = sequence_plan(_config(control_input=controls), signature, 1, tmp_path)
    loop = asyncio.new_event_loop()
    future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()  # never awaited here
    loop.close()

    def row(index: int, sequence_id: int | str, value: int, start: bool, end: bool) -> Row:
        step = Step({"INPUT": np.array([[value]], np.int32)}, (), start, end, future, 0, None)
        state = {"STATE_IN": np.array([value, -value], np.float32)}
        return Row(index, Sequence(sequence_id, state), step, state)

    fed = feed(plan, [row(1, "abc", 5, True, False), row(3, 42, 7, False, True)], 4)
    np.testing.assert_array_equal(fed["INPUT"], [[0], [5], [0], [7]])
    np.testing.assert_array_equal(fed["START"], [[0], [1], [0], [0]])
    np.testing.assert_array_equal(fed["END"], [[False], [False], [False], [True]])
    np.testing.assert_array_equal(fed["READY"], [[0], [1], [0], [1]])
    assert fed["CORRID"][:, 0].tolist() == [b"", b"abc", b"", b"42"]
    np.testing.assert_array_equal(fed["STATE_IN"], [[0, 0], [5, -5], [0, 0], [7, -7]])
