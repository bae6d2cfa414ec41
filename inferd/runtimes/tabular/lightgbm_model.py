"""LightGBM boosters from ``model.txt`` (LightGBM's text format: no code runs on load).

Objectives ``binary`` and ``multiclass``/``multiclassova`` are served as classifiers: predict gives the
index of the most probable class (the file does not keep the labels LGBMClassifier was fitted on) and
predict_proba one column per class. Every other objective is served as a regressor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inferd.errors import ModelLoadError
from inferd.model_config import LightGBMOptions
from inferd.runtimes.base import Runtime, RuntimeSettings
from inferd.runtimes.tabular.native import NativeModel, require
from inferd.runtimes.tabular.runtime import TabularRuntime

_CONVERTER_OPSET = 15


def load_lightgbm(path: Path, settings: RuntimeSettings, options: LightGBMOptions) -> Runtime:
    require("lightgbm", "lightgbm", path)
    return TabularRuntime("lightgbm", path, settings, options, lambda threads: _load(path, threads))


def _load(path: Path, threads: int) -> NativeModel:
    import lightgbm

    try:
        booster = lightgbm.Booster(model_file=str(path))
    except lightgbm.basic.LightGBMError as exc:
        raise ModelLoadError(f"{path}: LightGBM cannot load the model: {exc}") from None
    dump = booster.dump_model(num_iteration=0)
    objective = str(dump.get("objective", "")).split(" ")[0]
    n_features = int(dump["max_feature_idx"]) + 1
    classes = int(dump.get("num_class", 1))
    binary = objective == "binary"
    classifier = binary or objective in ("multiclass", "multiclassova")

    def raw(rows: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(rows, num_threads=threads))

    def predict_proba(rows: np.ndarray) -> np.ndarray:
        scores = raw(rows)
        if binary:
            both: np.ndarray = np.column_stack([1.0 - scores, scores])
            return both
        return scores

    def predict(rows: np.ndarray) -> np.ndarray:
        if not classifier:
            return raw(rows)
        labels: np.ndarray = np.argmax(predict_proba(rows), axis=1).astype(np.int64)
        return labels

    return NativeModel(
        predict=predict,
        predict_proba=predict_proba if classifier else None,
        n_features=n_features,
        classes=np.arange(2 if binary else classes) if classifier else None,
        targets=1 if classifier else classes,
        feature_range=_feature_range(dump, n_features),
        convert=lambda name: _convert(booster, name, n_features, path),
        converter="onnxmltools",
        kind=f"LightGBM {objective} booster",
    )


def _convert(booster: Any, input_name: str, n_features: int, path: Path) -> Any:
    require("onnxmltools", "lightgbm", path, "convert this model to ONNX")
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    return convert_lightgbm(
        booster,
        initial_types=[(input_name, FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=_CONVERTER_OPSET,
    )


def _feature_range(dump: dict[str, Any], n_features: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The min and max of every feature in the training data, which LightGBM keeps in the file."""
    infos = list(dump.get("feature_infos", {}).values())
    if len(infos) != n_features:
        return None
    low, high = np.full(n_features, -1.0), np.full(n_features, 1.0)
    for i, info in enumerate(infos):
        if isinstance(info, dict) and "min_value" in info and "max_value" in info:
            low[i], high[i] = float(info["min_value"]), float(info["max_value"])
    return low, high
