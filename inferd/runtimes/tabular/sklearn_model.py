"""scikit-learn estimators and pipelines from ``model.joblib`` or ``model.pkl``.

Unpickling runs code the file names: these files are loaded only from the model repository, which the
operator controls (docs/security.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inferd.errors import ModelLoadError
from inferd.model_config import SklearnOptions
from inferd.runtimes.base import Runtime, RuntimeSettings
from inferd.runtimes.tabular.native import NativeModel, require, split_ranges
from inferd.runtimes.tabular.runtime import ONNX_OPSET, TabularRuntime


def load_sklearn(path: Path, settings: RuntimeSettings, options: SklearnOptions) -> Runtime:
    require("sklearn", "sklearn", path)
    return TabularRuntime("sklearn", path, settings, options, lambda threads: _load(path))


def _load(path: Path) -> NativeModel:
    import joblib

    try:
        # joblib (a dependency of scikit-learn) reads its own files and plain pickles alike.
        model = joblib.load(path)  # runs code: repository files only (docs/security.md)
    except Exception as exc:  # unpickling raises whatever the pickled code raises
        raise ModelLoadError(f"{path}: cannot be unpickled: {type(exc).__name__}: {exc}") from None
    if not callable(getattr(model, "predict", None)):
        raise ModelLoadError(f"{path}: holds a {type(model).__name__}, which has no predict method")
    from sklearn.base import is_classifier

    classifier = is_classifier(model) and hasattr(model, "predict_proba")
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, int | np.integer):
        raise ModelLoadError(f"{path}: the {type(model).__name__} does not say how many features it takes")
    targets = 1
    if not classifier:
        outputs = getattr(model, "n_outputs_", 1)
        targets = int(outputs) if isinstance(outputs, int | np.integer) else 1
    return NativeModel(
        predict=model.predict,
        predict_proba=model.predict_proba if classifier else None,
        n_features=int(n_features),
        classes=np.asarray(model.classes_) if classifier else None,
        targets=targets,
        feature_range=_feature_range(model, int(n_features)),
        convert=lambda name: _convert(model, name, int(n_features), classifier, path),
        converter="skl2onnx",
        kind=type(model).__name__,
    )


def _convert(model: Any, input_name: str, n_features: int, classifier: bool, path: Path) -> Any:
    require("skl2onnx", "sklearn", path, "convert this model to ONNX")
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    return to_onnx(
        model,
        initial_types=[(input_name, FloatTensorType([None, n_features]))],
        # zipmap off: a probability tensor instead of a sequence of maps, which V2 cannot carry.
        options={"zipmap": False} if classifier else None,
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": 3},
    )


def _feature_range(model: Any, n_features: int) -> tuple[np.ndarray, np.ndarray] | None:
    """What the first step tells of the training data: a scaler's statistics, or tree thresholds."""
    steps = getattr(model, "steps", None)
    first = steps[0][1] if steps else model
    if hasattr(first, "data_min_") and hasattr(first, "data_max_"):
        return np.asarray(first.data_min_, float), np.asarray(first.data_max_, float)
    scale = getattr(first, "scale_", None)
    if hasattr(first, "mean_") and first.mean_ is not None and scale is not None:
        mean, scale = np.asarray(first.mean_, float), np.asarray(scale, float)
        return mean - 3 * scale, mean + 3 * scale
    trees = [first] if hasattr(first, "tree_") else list(np.ravel(getattr(first, "estimators_", [])))
    splits: dict[int, list[float]] = {}
    for tree in trees:
        structure = getattr(tree, "tree_", None)
        if structure is None:
            return None
        for feature, threshold in zip(structure.feature, structure.threshold, strict=True):
            if feature >= 0:
                splits.setdefault(int(feature), []).append(float(threshold))
    return split_ranges(n_features, splits) if splits else None
