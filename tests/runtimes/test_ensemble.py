"""The ensemble's load-time checks (runtimes/ensemble.py): what config.yaml alone can tell."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inferd.errors import ModelLoadError
from inferd.model_config import ModelConfig
from inferd.runtimes.base import RuntimeSettings
from inferd.runtimes.ensemble import EnsembleRuntime

IO = {
    "inputs": [{"name": "X", "datatype": "FP32", "dims": [4]}],
    "outputs": [{"name": "Y", "datatype": "FP32", "dims": [4]}],
}


def _load(tmp_path: Path, steps: list[dict[str, object]], **extra: object) -> EnsembleRuntime:
    config = ModelConfig.model_validate(
        {"platform": "ensemble", **IO, **extra, "ensemble_scheduling": {"step": steps}}
    )
    version_dir = tmp_path / "ens" / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    settings = RuntimeSettings(1, config.max_batch_size, config.inputs, config.outputs)
    return EnsembleRuntime(version_dir, settings, config.ensemble_scheduling)


def _step(model: str, reads: str, writes: str) -> dict[str, object]:
    return {"model_name": model, "input_map": {"in": reads}, "output_map": {"out": writes}}


def test_a_dag_plans_each_steps_dependencies(tmp_path: Path) -> None:
    runtime = _load(
        tmp_path,
        [
            {"model_name": "join", "input_map": {"a": "A", "b": "B"}, "output_map": {"out": "Y"}},
            _step("left", "X", "A"),
            _step("right", "X", "B"),
        ],
        max_batch_size=8,
    )
    assert [(s.model_name, sorted(s.after), s.version) for s in runtime.steps] == [
        ("join", [1, 2], None),
        ("left", [], None),
        ("right", [], None),
    ]
    assert runtime.step_models == ["join", "left", "right"]
    assert runtime.signature.max_batch_size == 8


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [_step("a", "X", "T"), _step("b", "X", "T"), _step("c", "T", "Y")],
            "'T' is written by step 0 and by step 1",
        ),
        (
            [_step("a", "X", "X"), _step("b", "X", "Y")],
            "step 0 (model 'a') writes 'X', which is an ensemble input",
        ),
        ([_step("a", "ghost", "Y")], "step 0 (model 'a') reads 'ghost': neither an ensemble input"),
        ([_step("a", "X", "Z")], "ensemble outputs ['Y'] are not written by any step"),
        ([_step("ens", "X", "Y")], "step 0 (model 'ens') is the ensemble itself"),
        (
            [_step("a", "X", "Y"), _step("b", "C", "B"), _step("c", "B", "C")],
            "cycle: step 1 (model 'b') -> step 2 (model 'c') -> step 1 (model 'b')",
        ),
    ],
)
def test_bad_graphs_are_load_errors_naming_the_culprit(
    tmp_path: Path, steps: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(ModelLoadError) as caught:
        _load(tmp_path, steps)
    assert message in caught.value.message
    assert "config.yaml" in caught.value.message


def test_inputs_need_datatype_and_dims(tmp_path: Path) -> None:
    config = ModelConfig.model_validate(
        yaml.safe_load(
            "platform: ensemble\ninputs: [{name: X}]\noutputs: [{name: Y, datatype: FP32, dims: [1]}]\n"
            "ensemble_scheduling: {step: [{model_name: a, input_map: {i: X}, output_map: {o: Y}}]}"
        )
    )
    (tmp_path / "ens" / "1").mkdir(parents=True)
    settings = RuntimeSettings(1, None, config.inputs, config.outputs)
    with pytest.raises(ModelLoadError, match="ensemble input 'X' needs a datatype and dims"):
        EnsembleRuntime(tmp_path / "ens" / "1", settings, config.ensemble_scheduling)


def test_version_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="positive integers"):
        ModelConfig.model_validate(
            {
                "ensemble_scheduling": {
                    "step": [
                        {
                            "model_name": "a",
                            "model_version": 0,
                            "input_map": {"i": "X"},
                            "output_map": {"o": "Y"},
                        }
                    ]
                }
            }
        )
