"""Response parameters a Python model sets (``inferd.Response``): what is refused, and what carries
them from ``predict`` to each request's response."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from inferd import Model, Response, Tensor, testing
from inferd.errors import ExecutionError
from inferd.runtimes.base import Signature
from inferd.runtimes.request_parameters import (
    MAX_NAME_LENGTH,
    MAX_PARAMETERS,
    MAX_STRING_LENGTH,
    MAX_TOTAL_LENGTH,
)
from inferd.runtimes.response_parameters import checked_parameters, parameters_of, with_parameters
from inferd.scheduler.batching import split
from inferd.scheduler.sequence_plan import sequence_plan
from inferd.scheduler.sequences import Row, Sequence, Step, split_row
from inferd.sequence_config import SequenceBatching
from inferd.types import TensorSpec

LABEL = "m/1"


def test_plain_values_pass_as_a_dict() -> None:
    given = {"label": "a", "count": -(2**63), "ok": False, "ratio": 0.25}
    assert checked_parameters(given, LABEL) == given


@pytest.mark.parametrize(
    ("parameters", "phrase"),
    [
        ({"binary_data_size": 1}, "the key 'binary_data_size', which is the server's own"),
        ({"sequence_end": True}, "the key 'sequence_end', which is the server's own"),
        ({"triton_final_response": True}, "the key 'triton_final_response', which is the server's own"),
        ({"shared_memory_region": "r"}, "the key 'shared_memory_region', which is the server's own"),
        ({"x": None}, "'x' has type NoneType; a value is a bool, int, float or str"),
        ({"x": {"y": 1}}, "'x' has type dict"),
        ({"x": np.int64(1)}, "'x' has type int64"),
        ({"x": b"raw"}, "'x' has type bytes"),
        ({"x": 2**63}, "'x' is an integer outside the 64-bit range"),
        ({"x": -(10**5000)}, "'x' is an integer outside the 64-bit range"),
        ({"x": float("nan")}, "which JSON cannot carry"),
        ({1: "a"}, "the key 1; a key is a string of 1 to"),
        ({"": "a"}, "the key ''"),
        ({type("Name", (str,), {})("a"): 1}, "the key 'a'; a key is a string"),  # only str itself
        ({"k" * (MAX_NAME_LENGTH + 1): 1}, f"a key is a string of 1 to {MAX_NAME_LENGTH} characters"),
        ({"x": "s" * (MAX_STRING_LENGTH + 1)}, f"at most {MAX_STRING_LENGTH}"),
        ({f"p{i}": i for i in range(MAX_PARAMETERS + 1)}, f"at most {MAX_PARAMETERS} are allowed"),
        ({f"p{i}": "s" * 4000 for i in range(5)}, f"past {MAX_TOTAL_LENGTH} characters"),
        ([("x", 1)], "as list; expected a dict"),
    ],
)
def test_bad_parameters_are_an_execution_error_saying_what(parameters: Any, phrase: str) -> None:
    with pytest.raises(ExecutionError) as caught:
        checked_parameters(parameters, LABEL)
    assert caught.value.message.startswith(f"model {LABEL}: predict returned response parameters")
    assert phrase in caught.value.message


def test_a_plain_dict_is_returned_as_it_is() -> None:
    outputs = {"y": np.zeros(2)}
    assert with_parameters(outputs, None) is outputs and with_parameters(outputs, {}) is outputs
    assert parameters_of(outputs) is None


def test_the_batchers_split_gives_every_request_the_parameters() -> None:
    outputs = with_parameters({"y": np.arange(5)}, {"label": "a"})
    parts = split(outputs, [2, 3])
    assert [part["y"].tolist() for part in parts] == [[0, 1], [2, 3, 4]]
    assert [parameters_of(part) for part in parts] == [{"label": "a"}, {"label": "a"}]
    assert [parameters_of(part) for part in split({"y": np.arange(5)}, [2, 3])] == [None, None]


class _Labelled(Model):
    inputs: ClassVar[list[Tensor]] = [Tensor("x", "FP32", [-1, 1])]
    outputs: ClassVar[list[Tensor]] = [Tensor("y", "FP32", [-1, 1])]
    max_batch_size = 4

    def predict(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> Response:
        if parameters.get("bad"):
            return Response({"y": inputs["x"]}, {"timeout": 1})
        return Response({"y": inputs["x"] + 1}, {"mode": parameters.get("mode", "none")})


def test_local_model_returns_the_response_parameters() -> None:
    with testing.load(_Labelled) as model:
        response = model.infer_response({"x": [[1.0]]}, parameters={"mode": "fast"})
        assert response.outputs["y"].tolist() == [[2.0]] and response.parameters == {"mode": "fast"}
        assert model.infer({"x": [[1.0]]})["y"].tolist() == [[2.0]]
        with pytest.raises(ExecutionError, match="the key 'timeout', which is the server's own"):
            model.infer({"x": [[1.0]]}, parameters={"bad": True})


def test_sequence_batching_gives_every_row_the_parameters(tmp_path: Path) -> None:
    signature = Signature(
        inputs=(TensorSpec("INPUT", "INT32", (1,)), TensorSpec("START", "INT32", (1,))),
        outputs=(TensorSpec("OUTPUT", "INT32", (1,)),),
        max_batch_size=2,
    )
    start = {"name": "START", "control": [{"kind": "CONTROL_SEQUENCE_START", "int32_false_true": [0, 1]}]}
    plan = sequence_plan(SequenceBatching.model_validate({"control_input": [start]}), signature, 1, tmp_path)
    loop = asyncio.new_event_loop()
    future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()  # never awaited here
    loop.close()
    step = Step({"INPUT": np.array([[5]], np.int32)}, (), True, False, future, 0, None)
    row = Row(1, Sequence(7, {}), step, {})
    outputs = with_parameters({"OUTPUT": np.array([[4], [5]], np.int32)}, {"label": "a"})
    kept, _ = split_row(plan, "m", outputs, row, 2)
    assert kept["OUTPUT"].tolist() == [[5]] and parameters_of(kept) == {"label": "a"}
    assert parameters_of(split_row(plan, "m", dict(outputs), row, 2)[0]) is None
