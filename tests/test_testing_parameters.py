"""inferd.testing with request parameters: predict(inputs, parameters), in-process and in a worker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pymodels
import pytest

from inferd import Model, Tensor, testing
from inferd.errors import InvalidRequest


def _seen(out: dict[str, np.ndarray]) -> object:
    return json.loads(out["seen"][0][0])


@pytest.fixture(scope="module", params=["thread", "process"])
def scale_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[testing.LocalModel]:
    model_dir = pymodels.write(
        tmp_path_factory.mktemp("scale"),
        "scale",
        pymodels.SCALE_BY_PARAMETER,
        config=f"instance_kind: {request.param}\n",
    )
    with testing.load(model_dir / "1") as model:
        yield model


def test_parameters_reach_predict_without_the_servers_own(scale_model: testing.LocalModel) -> None:
    x = [[1.0, 2.0]]
    out = scale_model.infer({"x": x}, parameters={"scale": 3, "mode": "m", "priority": 1, "sequence_id": 4})
    assert out["y"].tolist() == [[3.0, 6.0]]
    assert _seen(out) == {"mode": "m", "scale": 3}
    # Without parameters the model gets an empty dict; a V2 body's own parameters count too.
    assert _seen(scale_model.infer({"x": x})) == {}
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": x}],
        "parameters": {"scale": 0.5},
    }
    assert scale_model.infer(body)["y"].tolist() == [[0.5, 1.0]]


def test_a_batch_gets_the_one_dict_its_requests_sent(scale_model: testing.LocalModel) -> None:
    first, second = scale_model.infer_batch(
        [{"x": [[1.0, 1.0]]}, {"x": [[2.0, 2.0]] * 2}], parameters={"scale": 2}
    )
    assert first["y"].tolist() == [[2.0, 2.0]]
    assert second["y"].tolist() == [[4.0, 4.0]] * 2
    assert first["rows"].tolist() == [[3]]


def test_streams_take_parameters_across_the_process_hop(scale_model: testing.LocalModel) -> None:
    responses = list(scale_model.infer_stream({"x": [[1.0, 1.0]]}, parameters={"scale": 2, "steps": 3}))
    assert [r["y"].tolist() for r in responses] == [[[2.0, 2.0]], [[4.0, 4.0]], [[6.0, 6.0]]]
    assert all(_seen(r) == {"scale": 2, "steps": 3} for r in responses)


def test_hostile_parameters_are_refused_before_the_model_runs(scale_model: testing.LocalModel) -> None:
    with pytest.raises(InvalidRequest, match="parameter 'scale' is an object"):
        scale_model.infer({"x": [[1.0, 1.0]]}, parameters={"scale": {"a": 1}})
    with pytest.raises(InvalidRequest, match="parameter 'steps' is an array"):
        next(scale_model.infer_stream({"x": [[1.0, 1.0]]}, parameters={"steps": [1]}))


class Plain(Model):
    inputs = [Tensor("x", "FP32", [-1, 2])]
    outputs = [Tensor("y", "FP32", [-1, 2])]
    max_batch_size = 4

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] + 1}


def test_a_model_taking_inputs_only_is_called_as_before() -> None:
    with testing.load(Plain) as model:
        # Parameters it does not take are not its concern, as in the server: not even checked.
        out = model.infer({"x": [[1.0, 1.0]]}, parameters={"scale": 2, "nested": {"a": 1}})
        assert out["y"].tolist() == [[2.0, 2.0]]
        assert [r["y"].tolist() for r in model.infer_stream({"x": [[0.0, 0.0]]}, parameters={"a": 1})] == [
            [[1.0, 1.0]]
        ]
