"""What every framework module hands the tabular runtime: a loaded model, described the same way."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from inferd.errors import ModelLoadError

Predict = Callable[[np.ndarray], np.ndarray]
# input name -> an ONNX ModelProto taking [None, n_features] FP32 under that name.
Convert = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class NativeModel:
    """One loaded copy of a model (one per instance), with what the runtime needs to know about it."""

    predict: Predict
    # Classifiers only: class probabilities, one column per class.
    predict_proba: Predict | None
    n_features: int
    # Classifiers: the labels predict returns (their dtype decides the output's datatype).
    classes: np.ndarray | None
    # Regressors: values per row (1: predict is [batch]).
    targets: int
    # Per-feature (low, high) the model was fitted on, when the file tells; None: unknown.
    feature_range: tuple[np.ndarray, np.ndarray] | None
    # Converts this model to ONNX (raises when the converter cannot); named in reasons.
    convert: Convert
    converter: str
    kind: str  # the model's class, for messages


def require(module: str, extra: str, path: Path, purpose: str = "load this model") -> ModuleType:
    """Import an optional package, or fail the load with one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelLoadError(
            f"{path}: {module} is needed to {purpose} and is not installed: pip install 'inferd[{extra}]'"
        ) from None


def split_ranges(n_features: int, splits: dict[int, list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ranges around a tree ensemble's split thresholds (unsplit features: [-1, 1])."""
    low = np.full(n_features, -1.0)
    high = np.full(n_features, 1.0)
    for feature, values in splits.items():
        if 0 <= feature < n_features and values:
            lo, hi = min(values), max(values)
            margin = 0.1 * (hi - lo) or 0.1 * max(1.0, abs(lo))
            low[feature], high[feature] = lo - margin, hi + margin
    return low, high
