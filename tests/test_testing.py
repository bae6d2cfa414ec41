"""inferd.testing: a model called in-process with V2-shaped requests, checked as the server checks."""

from __future__ import annotations

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
