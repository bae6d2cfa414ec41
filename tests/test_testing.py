"""inferd.testing: a model called in-process with V2-shaped requests, checked as the server checks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import modelfactory as mf
import numpy as np
import pymodels
import pytest

from inferd import ExecutionError, InvalidRequest, Model, Tensor, testing


class Echo(Model):
    inputs = [Tensor("text", "BYTES", [-1]), Tensor("x", "FP32", [-1, 2])]
    outputs = [Tensor("text_out", "BYTES", [-1]), Tensor("sum", "FP32", [-1])]
    max_batch_size = 8

    def load(self, path: Path) -> None:
        self.calls = 0
        self.path = path

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"text_out": inputs["text"][::-1].copy()[::-1], "sum": inputs["x"].sum(axis=1)}


def test_a_model_class_answers_dicts_v2_lists_and_v2_bodies(tmp_path: Path) -> None:
    with testing.load(Echo, path=tmp_path) as model:
        by_dict = model.infer({"text": ["a", "b"], "x": [[1, 2], [3, 4]]})
        assert by_dict["text_out"].tolist() == [b"a", b"b"] and by_dict["sum"].tolist() == [3.0, 7.0]
        v2_inputs = [
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["z"]},
            {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 1]},
        ]
        assert model.infer(v2_inputs)["sum"].tolist() == [2.0]
        only_sum = model.infer({"inputs": v2_inputs, "outputs": [{"name": "sum"}]})
        assert list(only_sum) == ["sum"]


def test_infer_batch_is_one_predict_call_split_per_request() -> None:
    with testing.load(Echo) as model:
        first, second = model.infer_batch(
            [{"text": ["a"], "x": [[1, 1]]}, {"text": ["b", "c"], "x": [[2, 2], [3, 3]]}]
        )
        assert first["sum"].tolist() == [2.0] and second["sum"].tolist() == [4.0, 6.0]
        assert model._runtime._model.calls == 1  # type: ignore[attr-defined]


def test_requests_are_checked_against_the_signature() -> None:
    with testing.load(Echo) as model:
        with pytest.raises(InvalidRequest, match="expects input"):
            model.infer({"text": ["a"]})
        with pytest.raises(InvalidRequest, match=r"expects shape \[-1, 2\]"):
            model.infer({"text": ["a"], "x": [[1, 2, 3]]})
        with pytest.raises(InvalidRequest, match="exceeds the max_batch_size 8"):
            model.infer({"text": ["a"] * 9, "x": np.zeros((9, 2))})


def test_check_signature_catches_a_model_that_breaks_its_promise() -> None:
    class Broken(Echo):
        def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"text_out": inputs["text"], "sum": inputs["x"]}  # 2 columns, not 1

    with testing.load(Echo) as good:
        assert good.check_signature()["sum"].shape == (2,)
    wrong_shape = r"output 'sum' has shape \[2, 2\]"
    with testing.load(Broken) as broken, pytest.raises(ExecutionError, match=wrong_shape):
        broken.check_signature()


def test_a_version_directory_loads_with_its_config_yaml(tmp_path: Path) -> None:
    model_dir = pymodels.write(tmp_path, "m", pymodels.add_constant(3.0), config="max_batch_size: 2\n")
    with testing.load(model_dir / "1") as model:
        assert model.signature.max_batch_size == 2
        assert model.infer({"INPUT0": np.zeros((2, 4))})["OUTPUT0"].tolist() == [[3.0] * 4] * 2
    with testing.load(model_dir / "1" / "model.py") as model:
        assert model.signature.max_batch_size == 2


def test_onnx_models_load_too(tmp_path: Path) -> None:
    mf.add_constant(tmp_path / "m" / "1" / "model.onnx", 1.5)
    with testing.load(tmp_path / "m" / "1") as model:
        assert model.infer({"INPUT0": np.zeros((1, 4))})["OUTPUT0"].tolist() == [[1.5] * 4]


class Countdown(Model):
    """A decoupled model: one response per step, counting down from each request's n."""

    inputs = [Tensor("n", "INT32", [-1])]
    outputs = [Tensor("left", "INT32", [-1])]
    max_batch_size = 4

    def predict_stream(self, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        left = inputs["n"].copy()
        while (left > 0).any():
            left = np.maximum(left - 1, 0)
            yield {"left": left}


class BadStream(Countdown):
    def predict_stream(self, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        yield {"left": inputs["n"]}
        yield {"wrong": inputs["n"]}


class RaisingStream(Countdown):
    def predict_stream(self, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        yield {"left": inputs["n"]}
        raise RuntimeError("ran dry")


def test_infer_stream_yields_each_checked_response() -> None:
    with testing.load(Countdown) as model:
        responses = [r["left"].tolist() for r in model.infer_stream({"n": [3, 1]})]
        assert responses == [[2, 0], [1, 0], [0, 0]]
        with pytest.raises(ExecutionError, match="does not implement predict"):
            model.infer({"n": [1]})


def test_a_model_without_predict_stream_streams_its_predict_once(tmp_path: Path) -> None:
    with testing.load(Echo, path=tmp_path) as model:
        (only,) = model.infer_stream({"text": ["a"], "x": [[1, 2]]})
        assert only["sum"].tolist() == [3.0]


def test_a_stream_fails_after_the_responses_already_yielded() -> None:
    with testing.load(BadStream) as model:
        stream = model.infer_stream({"n": [1]})
        assert next(stream)["left"].tolist() == [1]
        with pytest.raises(ExecutionError, match=r"returned outputs \['wrong'\]; expected \['left'\]"):
            next(stream)
    with testing.load(RaisingStream) as model:
        stream = model.infer_stream({"n": [1]})
        next(stream)
        with pytest.raises(ExecutionError, match="predict_stream raised RuntimeError: ran dry"):
            next(stream)


PID_MODEL = """
import os
import numpy as np
from inferd import Model, Tensor

class Pid(Model):
    inputs = [Tensor("x", "FP32", [-1, 2])]
    outputs = [Tensor("pid", "INT64", [-1])]
    max_batch_size = 4

    def predict(self, inputs):
        return {"pid": np.full(len(inputs["x"]), os.getpid(), dtype=np.int64)}
"""


def test_a_process_kind_model_runs_in_its_worker_process(tmp_path: Path) -> None:
    model_dir = pymodels.write(tmp_path, "pid", PID_MODEL, config="instance_kind: process\n")
    with testing.load(model_dir / "1") as model:
        (pid,) = model.infer({"x": [[1, 2]]})["pid"].tolist()
        assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # closing the model stopped its worker


COUNTDOWN_MODEL = """
import numpy as np
from inferd import Model, Tensor

class Countdown(Model):
    inputs = [Tensor("n", "INT32", [-1])]
    outputs = [Tensor("left", "INT32", [-1])]
    max_batch_size = 4

    def predict(self, inputs):
        return {"left": inputs["n"]}

    def predict_stream(self, inputs):
        if (inputs["n"] < 0).any():
            yield {"left": inputs["n"]}
            raise RuntimeError("negative countdown")
        left = inputs["n"].copy()
        while (left > 0).any():
            left = np.maximum(left - 1, 0)
            yield {"left": left}
"""


def test_a_process_kind_model_streams_from_its_worker(tmp_path: Path) -> None:
    model_dir = pymodels.write(tmp_path, "c", COUNTDOWN_MODEL, config="instance_kind: process\n")
    with testing.load(model_dir / "1") as model:
        assert [r["left"].tolist() for r in model.infer_stream({"n": [3, 1]})] == [[2, 0], [1, 0], [0, 0]]
        stopped = model.infer_stream({"n": [100]})
        assert next(stopped)["left"].tolist() == [99]
        stopped.close()  # the worker stops that stream and takes the next request
        assert model.infer({"n": [7]})["left"].tolist() == [7]
        failing = model.infer_stream({"n": [-1]})
        assert next(failing)["left"].tolist() == [-1]
        with pytest.raises(ExecutionError, match="predict_stream raised RuntimeError: negative countdown"):
            next(failing)
        assert [r["left"].tolist() for r in model.infer_stream({"n": [1]})] == [[0]]
