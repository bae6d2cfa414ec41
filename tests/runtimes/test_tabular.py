"""The tabular runtime in-process: convert never/always/auto, fallback reasons, output selection,
signature overrides, and the one-line message when an optional package is missing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tabularmodels as tm

from inferd.errors import ModelLoadError
from inferd.model_config import ModelConfig
from inferd.runtimes.registry import create_runtime


def _load(version_dir: Path, **config: object) -> Any:
    return create_runtime(version_dir / "any", ModelConfig.model_validate(config))


def test_auto_serves_the_conversion_when_it_agrees(tmp_path: Path) -> None:
    trained = tm.xgboost_classifier(tmp_path / "1")
    runtime = _load(tmp_path / "1")
    assert runtime.parameters["runtime"] == "onnxruntime"
    assert "agrees with the native XGBoost multi:softprob booster on 256" in runtime.parameters["conversion"]
    rows = trained.rows[:7]
    outputs = runtime.run(0, {"input": rows})
    expected = tm.reference(trained, rows)
    assert np.array_equal(outputs["predict"], expected["predict"])
    np.testing.assert_allclose(outputs["predict_proba"], expected["predict_proba"], atol=1e-5)


def test_never_serves_the_native_model_and_computes_only_what_is_asked(tmp_path: Path) -> None:
    trained = tm.sklearn_classifier(tmp_path / "1")
    runtime = _load(tmp_path / "1", sklearn={"convert": "never"})
    assert runtime.parameters == {"runtime": "native", "conversion": "convert: never"}
    rows = trained.rows[:5]
    only = runtime.run_outputs(0, {"input": rows}, {"predict_proba"})
    assert set(only) == {"predict_proba"}
    np.testing.assert_array_equal(only["predict_proba"], tm.reference(trained, rows)["predict_proba"])
    both = runtime.run(0, {"input": rows})
    assert set(both) == {"predict", "predict_proba"}


def test_auto_falls_back_when_the_conversion_disagrees(tmp_path: Path) -> None:
    trained = tm.lightgbm_disagreeing(tmp_path / "1")
    runtime = _load(tmp_path / "1")
    reason = runtime.parameters["conversion"]
    assert runtime.parameters["runtime"] == "native"
    assert "disagrees with the native LightGBM regression booster: predict differs" in reason
    rows = trained.rows[:9]
    np.testing.assert_array_equal(
        runtime.run(0, {"input": rows})["predict"],
        trained.model.predict(rows).astype(np.float32),
    )


def test_auto_falls_back_when_the_model_cannot_be_converted(tmp_path: Path) -> None:
    tm.sklearn_unconvertible(tmp_path / "1")
    runtime = _load(tmp_path / "1")
    assert runtime.parameters["runtime"] == "native"
    assert runtime.parameters["conversion"].startswith("skl2onnx cannot convert the NearestCentroid")


@pytest.mark.parametrize("build", [tm.sklearn_unconvertible, tm.lightgbm_disagreeing])
def test_always_fails_the_load_when_conversion_fails_or_disagrees(
    tmp_path: Path, build: Callable[[Path], tm.Trained]
) -> None:
    build(tmp_path / "1")
    platform = "lightgbm" if build is tm.lightgbm_disagreeing else "sklearn"
    with pytest.raises(ModelLoadError, match="convert: always, but"):
        _load(tmp_path / "1", **{platform: {"convert": "always"}})


def test_always_serves_a_conversion_that_agrees(tmp_path: Path) -> None:
    tm.lightgbm_classifier(tmp_path / "1")
    runtime = _load(tmp_path / "1", lightgbm={"convert": "always"})
    assert runtime.parameters["runtime"] == "onnxruntime"


def test_config_renames_the_input_and_picks_fp64(tmp_path: Path) -> None:
    trained = tm.sklearn_regressor(tmp_path / "1")
    runtime = _load(tmp_path / "1", max_batch_size=8, inputs=[{"name": "features", "datatype": "FP64"}])
    signature = runtime.signature
    assert (signature.inputs[0].name, signature.inputs[0].datatype) == ("features", "FP64")
    assert (signature.outputs[0].datatype, signature.max_batch_size) == ("FP64", 8)
    rows = trained.rows[:4].astype(np.float64)
    np.testing.assert_allclose(
        runtime.run(0, {"features": rows})["predict"], trained.model.predict(rows), rtol=1e-5
    )


def test_a_wrong_feature_count_in_the_config_is_a_load_error(tmp_path: Path) -> None:
    tm.xgboost_regressor(tmp_path / "1")
    with pytest.raises(ModelLoadError, match=r"takes 6 features: \[6\]"):
        _load(tmp_path / "1", inputs=[{"name": "input", "dims": [5]}])


_BLOCKED = """
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
sys.modules[{module!r}] = None
from inferd.errors import ModelLoadError
from inferd.model_config import ModelConfig
from inferd.runtimes.registry import create_runtime
try:
    runtime = create_runtime(Path({path!r}) / "any", ModelConfig())
except ModelLoadError as exc:
    print("error:", exc)
else:
    print("served:", runtime.parameters["runtime"], runtime.parameters["conversion"])
"""


def _without(module: str, version_dir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED.format(module=module, path=str(version_dir))],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("build", "module", "extra"),
    [
        (tm.xgboost_regressor, "xgboost", "xgboost"),
        (tm.lightgbm_regressor, "lightgbm", "lightgbm"),
        (tm.sklearn_regressor, "sklearn", "sklearn"),
    ],
)
def test_a_missing_framework_is_one_line_naming_the_extra(
    tmp_path: Path, build: Callable[[Path], tm.Trained], module: str, extra: str
) -> None:
    build(tmp_path / "1")
    out = _without(module, tmp_path / "1")
    assert out.startswith("error:") and len(out.splitlines()) == 1, out
    assert f"{module} is needed to load this model and is not installed: pip install 'inferd[{extra}]'" in out


def test_a_missing_converter_falls_back_to_native_naming_the_extra(tmp_path: Path) -> None:
    tm.lightgbm_classifier(tmp_path / "1")
    out = _without("onnxmltools", tmp_path / "1")
    assert out.startswith("served: native not converted: onnxmltools is needed to convert"), out
    assert "pip install 'inferd[lightgbm]'" in out
