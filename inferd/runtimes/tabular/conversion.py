"""Converting a native model to ONNX and checking that the conversion answers as the native model does.

The check runs both on ``CHECK_ROWS`` generated rows (seeded, so a load decides the same way every
time): uniform within each feature's training range when the model tells it (a scaler's statistics,
LightGBM's feature bounds, tree split thresholds), else standard normal. They agree when every label is
equal, every probability is within ``PROBA_ATOL`` and every regression value within ``PREDICT_RTOL``
of the native one (relative, with values below 1 compared absolutely).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inferd.runtimes.tabular.native import NativeModel

CHECK_ROWS = 256
PROBA_ATOL = 1e-5
PREDICT_RTOL = 1e-5
_SEED = 0


class ConversionFailed(Exception):
    """The converter refused the model, or its graph disagrees with the native model; says why."""


@dataclass(frozen=True, slots=True)
class Agreement:
    rows: int
    max_proba_error: float
    max_predict_error: float


def sample_rows(model: NativeModel, dtype: np.dtype[Any]) -> np.ndarray:
    rng = np.random.default_rng(_SEED)
    shape = (CHECK_ROWS, model.n_features)
    if model.feature_range is None:
        return rng.standard_normal(shape).astype(dtype)
    low, high = model.feature_range
    rows: np.ndarray = (low + (high - low) * rng.random(shape)).astype(dtype)
    return rows


def prepare_graph(graph: Any, renames: dict[str, str]) -> bytes:
    """The converter's graph with outputs renamed (``label`` -> ``predict`` ...) and a symbolic batch
    dimension on every input and output, serialized for ONNX Runtime."""
    for node in graph.graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in [*graph.graph.input, *graph.graph.output]:
        value.name = renames.get(value.name, value.name)
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    data: bytes = graph.SerializeToString()
    return data


def compare(native: dict[str, np.ndarray], converted: dict[str, np.ndarray], classifier: bool) -> Agreement:
    """Raise ConversionFailed unless ``converted`` agrees with ``native`` within the tolerances."""
    rows = len(next(iter(native.values())))
    proba_error = predict_error = 0.0
    if classifier:
        wrong = int(np.sum(native["predict"] != converted["predict"]))
        if wrong:
            raise ConversionFailed(f"predict differs on {wrong} of {rows} generated rows")
        difference = np.abs(native["predict_proba"].astype(np.float64) - converted["predict_proba"])
        proba_error = float(difference.max(initial=0.0))
        if not proba_error <= PROBA_ATOL:
            raise ConversionFailed(
                f"predict_proba differs by up to {proba_error:.3g} (tolerance {PROBA_ATOL:g}) on "
                f"{int(np.sum(difference.max(axis=1) > PROBA_ATOL))} of {rows} generated rows"
            )
    else:
        expected = native["predict"].astype(np.float64)
        error = np.abs(expected - converted["predict"]) / np.maximum(1.0, np.abs(expected))
        predict_error = float(error.max(initial=0.0))
        if not predict_error <= PREDICT_RTOL:
            off = int(np.sum(error.reshape(rows, -1).max(axis=1) > PREDICT_RTOL))
            raise ConversionFailed(
                f"predict differs by up to {predict_error:.3g} relative (tolerance {PREDICT_RTOL:g}) "
                f"on {off} of {rows} generated rows"
            )
    return Agreement(rows, proba_error, predict_error)
