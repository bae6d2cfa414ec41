"""The platform registry: which runtime serves a version, with which file and which options."""

from __future__ import annotations

from pathlib import Path

import modelfactory as mf
import numpy as np
import pymodels
import pytest
from onnx import TensorProto

from inferd.errors import ModelLoadError
from inferd.model_config import ModelConfig
from inferd.runtimes.onnx import OnnxRuntime
from inferd.runtimes.python import PythonRuntime
from inferd.runtimes.registry import (
    create_runtime,
    device_kind,
    instance_kind,
    model_file,
    platform_of,
    resolve,
)


def _config(**raw: object) -> ModelConfig:
    return ModelConfig.model_validate(raw)


def test_files_decide_when_config_names_no_platform(tmp_path: Path) -> None:
    onnx_dir = tmp_path / "a" / "1"
    mf.identity(onnx_dir / "model.onnx", TensorProto.FLOAT)
    py_dir = pymodels.write(tmp_path, "b", pymodels.add_constant(1.0)) / "1"
    assert resolve(onnx_dir, _config()).name == "onnxruntime"
    assert resolve(py_dir, _config()).name == "python"


def test_model_onnx_wins_unless_the_config_says_python(tmp_path: Path) -> None:
    version = pymodels.write(tmp_path, "m", pymodels.add_constant(1.0)) / "1"
    mf.identity(version / "model.onnx", TensorProto.FLOAT)
    assert resolve(version, _config()).name == "onnxruntime"
    assert resolve(version, _config(platform="python")).name == "python"
    assert model_file(version, _config(backend="python")) == version / "model.py"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ({"platform": "onnxruntime_onnx"}, "onnxruntime"),
        ({"backend": "onnxruntime"}, "onnxruntime"),
        ({"backend": "python"}, "python"),
        ({"platform": "python", "backend": "python"}, "python"),
    ],
)
def test_triton_names_are_accepted(tmp_path: Path, raw: dict[str, str], name: str) -> None:
    assert resolve(tmp_path, _config(**raw)).name == name


def test_unknown_and_contradicting_platforms_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown platform 'tensorflow'; known: .*python"):
        resolve(tmp_path, _config(platform="tensorflow"))
    with pytest.raises(ModelLoadError, match="disagree"):
        resolve(tmp_path, _config(platform="python", backend="onnxruntime"))


def test_a_version_without_model_file_says_what_it_expects(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(ModelLoadError, match=r"no model file \(expected one of model.onnx, model.py"):
        resolve(tmp_path / "m" / "1", _config())
    assert model_file(tmp_path / "m" / "1", _config()) is None


def test_each_runtime_gets_its_own_options_only(tmp_path: Path) -> None:
    version = pymodels.write(tmp_path, "m", pymodels.add_constant(1.0)) / "1"
    runtime = create_runtime(version / "model.py", _config(instances=2))
    try:
        assert isinstance(runtime, PythonRuntime) and runtime.instances == 2
        assert platform_of(runtime).backend == "python"
    finally:
        runtime.close()
    with pytest.raises(
        ModelLoadError, match="'onnxruntime' options are set but the model's platform is python"
    ):
        create_runtime(version / "model.py", _config(onnxruntime={"intra_op_threads": 2}))


def test_onnx_models_load_through_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.onnx"
    mf.add_constant(path, 2.0)
    runtime = create_runtime(path, _config(instances=2, onnxruntime={"intra_op_threads": 1}))
    try:
        assert isinstance(runtime, OnnxRuntime) and runtime.instances == 2
        out = runtime.run(1, {"INPUT0": np.ones((1, 4), np.float32)})
        assert out["OUTPUT0"].tolist() == [[3.0] * 4]
        assert platform_of(runtime).triton_platform == "onnxruntime_onnx"
    finally:
        runtime.close()


def test_a_declared_platform_needs_its_file(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.onnx"
    mf.add_constant(path, 2.0)
    with pytest.raises(ModelLoadError, match=r"model.py: file not found \(platform python loads model.py\)"):
        create_runtime(path, _config(platform="python"))


def test_process_instances_are_python_only_and_say_their_kind(tmp_path: Path) -> None:
    version = pymodels.write(tmp_path, "m", pymodels.add_constant(1.0)) / "1"
    runtime = create_runtime(version / "model.py", _config(instance_kind="process"))
    try:
        assert instance_kind(runtime) == "process" and device_kind(runtime) == "KIND_CPU"
        assert runtime.run(0, {"INPUT0": np.ones((1, 4), np.float32)})["OUTPUT0"].tolist() == [[2.0] * 4]
    finally:
        runtime.close()
    onnx_version = tmp_path / "o" / "1"
    onnx_version.mkdir(parents=True)
    mf.identity(onnx_version / "model.onnx", TensorProto.FLOAT)
    with pytest.raises(ModelLoadError, match="'instance_kind: process' is supported for Python models only"):
        create_runtime(onnx_version / "model.onnx", _config(instance_kind="process"))
