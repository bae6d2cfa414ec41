"""XGBoost boosters from ``model.json`` or ``model.ubj`` (XGBoost's own formats: no code runs on load).

Objectives ``binary:logistic`` and ``multi:softprob`` are served as classifiers (predict gives class
indices, as XGBClassifier does); every other objective as a regressor (predict gives the booster's output).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from inferd.errors import ModelLoadError
from inferd.model_config import XGBoostOptions
from inferd.runtimes.base import Runtime, RuntimeSettings
from inferd.runtimes.tabular.native import NativeModel, require, split_ranges
from inferd.runtimes.tabular.runtime import TabularRuntime

_CLASSIFIER_OBJECTIVES = ("binary:logistic", "multi:softprob")
# The highest opset onnxmltools' tree converters support.
_CONVERTER_OPSET = 15


def load_xgboost(path: Path, settings: RuntimeSettings, options: XGBoostOptions) -> Runtime:
    require("xgboost", "xgboost", path)
    return TabularRuntime("xgboost", path, settings, options, lambda threads: _load(path, threads))


def _load(path: Path, threads: int) -> NativeModel:
    import xgboost

    try:
        booster = xgboost.Booster(model_file=str(path))
    except xgboost.core.XGBoostError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise ModelLoadError(f"{path}: XGBoost cannot load the model: {first_line}") from None
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    classifier = objective in _CLASSIFIER_OBJECTIVES
    model: Any = xgboost.XGBClassifier() if classifier else xgboost.XGBRegressor()
    model.load_model(str(path))
    model.set_params(n_jobs=threads)
    n_features = booster.num_features()
    targets = 1
    if not classifier:
        learner = json.loads(booster.save_config())["learner"]["learner_model_param"]
        targets = max(1, int(learner.get("num_target", "1")))
    return NativeModel(
        predict=model.predict,
        predict_proba=model.predict_proba if classifier else None,
        n_features=n_features,
        classes=np.arange(model.n_classes_) if classifier else None,
        targets=targets,
        feature_range=split_ranges(n_features, _splits(booster)),
        convert=lambda name: _convert(model, name, n_features, path),
        converter="onnxmltools",
        kind=f"XGBoost {objective} booster",
    )


def _convert(model: Any, input_name: str, n_features: int, path: Path) -> Any:
    require("onnxmltools", "xgboost", path, "convert this model to ONNX")
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    return convert_xgboost(
        model,
        initial_types=[(input_name, FloatTensorType([None, n_features]))],
        target_opset=_CONVERTER_OPSET,
    )


def _splits(booster: Any) -> dict[int, list[float]]:
    """Split thresholds per feature index, read from the booster's JSON dump."""
    names = booster.feature_names
    index = {name: i for i, name in enumerate(names)} if names else {}
    splits: dict[int, list[float]] = {}
    pending = [json.loads(tree) for tree in booster.get_dump(dump_format="json")]
    while pending:
        node = pending.pop()
        if "split" in node:
            split = node["split"]
            feature = index.get(split, -1) if index else int(str(split).lstrip("f") or -1)
            splits.setdefault(feature, []).append(float(node["split_condition"]))
            pending.extend(node.get("children", []))
    return splits
