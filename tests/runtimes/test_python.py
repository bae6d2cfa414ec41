"""Loading and calling model.py: signature, instances, module isolation, errors in user code."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pymodels
import pytest

from inferd.errors import ExecutionError, InvalidRequest, ModelLoadError
from inferd.model_config import PythonOptions, TensorOverride
from inferd.runtimes.base import RuntimeSettings
from inferd.runtimes.python import PythonRuntime

TEXT = """
import numpy as np
from inferd import Model

class Text(Model):
    max_batch_size = 4

    def predict(self, inputs):
        texts = inputs["text"]
        return {
            "upper": np.array([t.upper() for t in texts], dtype=object),
            "length": np.array([len(t) for t in texts], dtype=np.float64),
        }
"""
TEXT_SETTINGS = RuntimeSettings(
    inputs=(TensorOverride(name="text", datatype="BYTES", dims=()),),
    outputs=(
        TensorOverride(name="upper", datatype="BYTES", dims=()),
        TensorOverride(name="length", datatype="FP32", dims=()),
    ),
)


def _load(
    tmp_path: Path, source: str, settings: RuntimeSettings | None = None, **options: str
) -> PythonRuntime:
    model_dir = pymodels.write(tmp_path, "m", source)
    path = model_dir / "1" / "model.py"
    return PythonRuntime(path, settings or RuntimeSettings(), PythonOptions(**options))


def test_signature_from_the_class_excludes_the_batch_dimension(tmp_path: Path) -> None:
    runtime = _load(tmp_path, pymodels.add_constant(1.0))
    assert runtime.signature.max_batch_size == 8
    assert [(s.name, s.datatype, s.dims) for s in runtime.signature.inputs] == [("INPUT0", "FP32", (4,))]
    out = runtime.run(0, {"INPUT0": np.zeros((3, 4), np.float32)})
    assert out["OUTPUT0"].tolist() == [[1.0] * 4] * 3


def test_config_max_batch_size_wins_and_instances_are_separate_objects(tmp_path: Path) -> None:
    runtime = _load(tmp_path, pymodels.add_constant(1.0), RuntimeSettings(instances=3, max_batch_size=2))
    assert runtime.signature.max_batch_size == 2 and runtime.instances == 3
    assert len({id(m) for m in runtime._models}) == 3


def test_signature_from_config_bytes_in_and_out(tmp_path: Path) -> None:
    runtime = _load(tmp_path, TEXT, TEXT_SETTINGS)
    texts = np.array([b"ab", b"\xc3\xa9t\xc3\xa9"], dtype=object)
    out = runtime.run(0, {"text": texts})
    assert out["upper"].tolist() == [b"AB", b"\xc3\xa9T\xc3\xa9"]
    # float64 returned for an FP32 output is cast, not refused.
    assert out["length"].dtype == np.float32 and out["length"].tolist() == [2.0, 5.0]


def test_missing_signature_says_where_to_declare_it(tmp_path: Path) -> None:
    settings = RuntimeSettings(inputs=(TensorOverride(name="text"),))
    with pytest.raises(ModelLoadError, match="config.yaml's input 'text' needs datatype and dims"):
        _load(tmp_path, TEXT, settings)
    with pytest.raises(ModelLoadError, match="declares no outputs"):
        _load(tmp_path / "b", TEXT, RuntimeSettings(max_batch_size=2))


def test_a_batching_shape_must_start_with_minus_one(tmp_path: Path) -> None:
    source = pymodels.add_constant(1.0).replace("[-1, 4])]\n    outputs", "[4])]\n    outputs")
    with pytest.raises(ModelLoadError, match=r"input 'INPUT0' has shape \[4\], but the model batches"):
        _load(tmp_path, source)


def test_versions_do_not_share_a_module(tmp_path: Path) -> None:
    source = pymodels.add_constant(1.0) + "\nSTATE = []\n"
    first = _load(tmp_path / "a", source)
    second = _load(tmp_path / "b", source)
    assert first._module is not second._module
    assert first._module.__name__ != second._module.__name__
    first.close()
    assert second.run(0, {"INPUT0": np.zeros((1, 4), np.float32)})["OUTPUT0"].shape == (1, 4)


def test_files_beside_model_py_are_importable_relatively(tmp_path: Path) -> None:
    model_dir = pymodels.write(
        tmp_path,
        "m",
        pymodels.add_constant(0.0)
        .replace("np.float32(0.0)", "np.float32(helper.PLUS)")
        .replace("import numpy as np", "import numpy as np\nfrom . import helper"),
    )
    (model_dir / "1" / "helper.py").write_text("PLUS = 7.0\n")
    runtime = PythonRuntime(model_dir / "1" / "model.py")
    assert runtime.run(0, {"INPUT0": np.zeros((1, 4), np.float32)})["OUTPUT0"].tolist() == [[7.0] * 4]


def test_load_receives_the_version_directory(tmp_path: Path) -> None:
    source = pymodels.add_constant(0.0) + (
        "\n    def load(self, path):\n        self.plus = float((path / 'plus.txt').read_text())\n"
    )
    source = source.replace("np.float32(0.0)", "np.float32(self.plus)")
    model_dir = pymodels.write(tmp_path, "m", source)
    (model_dir / "1" / "plus.txt").write_text("2.5")
    runtime = PythonRuntime(model_dir / "1" / "model.py")
    assert runtime.run(0, {"INPUT0": np.zeros((1, 4), np.float32)})["OUTPUT0"].tolist() == [[2.5] * 4]


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("x = 1\ndef broken(:\n", r"model.py:2: SyntaxError"),
        (
            "import numpy\n\nraise RuntimeError('no weights')\n",
            r"model.py:3: RuntimeError: no weights \(while importing",
        ),
        ("x = 1\n", r"defines no subclass of inferd.Model"),
        (
            "from inferd import Model\nclass A(Model): pass\nclass B(Model): pass\n",
            r"several Model subclasses \(A, B\); name one with python: \{class_name",
        ),
        (
            "from inferd import Model, Tensor\nclass A(Model):\n    outputs = [Tensor('y', 'FP32', [1])]\n"
            "    def load(self, path):\n        open(path / 'w.bin')\n",
            r"model.py:5: FileNotFoundError: .*w.bin.* \(while loading A\)",
        ),
    ],
)
def test_load_failures_name_file_line_and_message(tmp_path: Path, source: str, pattern: str) -> None:
    with pytest.raises(ModelLoadError, match=pattern):
        _load(tmp_path, source)


def test_class_name_picks_one_of_several(tmp_path: Path) -> None:
    source = pymodels.add_constant(1.0) + "\nclass Other(AddConstant):\n    pass\n"
    runtime = _load(tmp_path, source, class_name="Other")
    assert runtime.signature.max_batch_size == 8
    with pytest.raises(ModelLoadError, match="no Model subclass named 'Missing'"):
        _load(tmp_path / "b", source, class_name="Missing")


def test_an_exception_in_predict_gives_type_and_message_and_logs_the_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = pymodels.add_constant(1.0).replace(
        "return {", "raise ValueError('row 3 is bad')\n        return {"
    )
    runtime = _load(tmp_path, source)
    with caplog.at_level(logging.ERROR), pytest.raises(ExecutionError) as caught:
        runtime.run(0, {"INPUT0": np.zeros((1, 4), np.float32)})
    message = caught.value.message
    assert "predict raised ValueError: row 3 is bad" in message and "Traceback" not in message
    error_id = message.rsplit("error id ", 1)[1].rstrip(")")
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_an_inferd_error_from_predict_passes_unchanged(tmp_path: Path) -> None:
    source = pymodels.add_constant(1.0).replace(
        "return {", "raise __import__('inferd').InvalidRequest('negative ages')\n        return {"
    )
    with pytest.raises(InvalidRequest, match="^negative ages$"):
        _load(tmp_path, source).run(0, {"INPUT0": np.zeros((1, 4), np.float32)})


@pytest.mark.parametrize(
    ("returned", "pattern"),
    [
        ("{'wrong': inputs['INPUT0']}", r"predict returned outputs \['wrong'\]; expected \['OUTPUT0'\]"),
        ("inputs['INPUT0']", r"predict returned ndarray; expected a dict of \['OUTPUT0'\]"),
        ("{'OUTPUT0': inputs['INPUT0'][:1]}", r"has 1 rows for a batch of 2; expected one row per input row"),
        ("{'OUTPUT0': inputs['INPUT0'][:, :3]}", r"has shape \[2, 3\]; expected \[-1, 4\]"),
        ("{'OUTPUT0': inputs['INPUT0'].astype(str)}", r"is FP32; predict returned <U32 values"),
    ],
)
def test_wrong_outputs_say_what_was_expected(tmp_path: Path, returned: str, pattern: str) -> None:
    source = pymodels.add_constant(1.0).replace(
        'return {"OUTPUT0": inputs["INPUT0"] + np.float32(1.0)}', f"return {returned}"
    )
    runtime = _load(tmp_path, source)
    with pytest.raises(ExecutionError, match=pattern):
        runtime.run(0, {"INPUT0": np.zeros((2, 4), np.float32)})
