"""A model's reference input profile: per-feature bins and CDF points, stored as JSON next to the model.

A feature is one element position of a numeric input, batch dimension excluded (input [batch, 30]
has 30 features). Bins are the reference's deciles, so each holds about a tenth of the reference;
the CDF is kept at 101 quantiles for the Kolmogorov-Smirnov statistic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROFILE_FILE = "drift_profile.json"
NUMERIC_DATATYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"}
)
_CDF_POINTS = np.linspace(0, 1, 101)


@dataclass(frozen=True, slots=True)
class InputProfile:
    name: str
    # Inner bin edges per feature: bin i holds edges[i-1] < v <= edges[i] (searchsorted "left").
    edges: list[list[float]]
    # Reference fraction per bin, per feature (len(edges[f]) + 1 bins).
    fractions: list[list[float]]
    # Reference quantiles per feature and the reference CDF at each of them.
    quantiles: list[list[float]]
    cdf: list[list[float]]

    @property
    def features(self) -> int:
        return len(self.edges)


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    # Whether the model's inputs carry a leading batch dimension.
    batched: bool
    rows: int
    inputs: dict[str, InputProfile]

    def save(self, path: Path) -> None:
        document = {
            "version": 1,
            "batched": self.batched,
            "rows": self.rows,
            "inputs": {
                name: {
                    "edges": p.edges,
                    "fractions": p.fractions,
                    "quantiles": p.quantiles,
                    "cdf": p.cdf,
                }
                for name, p in self.inputs.items()
            },
        }
        path.write_text(json.dumps(document))

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        document = json.loads(path.read_text())
        if document.get("version") != 1:
            raise ValueError(f"{path}: unknown profile version {document.get('version')!r}")
        inputs = {
            name: InputProfile(name, raw["edges"], raw["fractions"], raw["quantiles"], raw["cdf"])
            for name, raw in document["inputs"].items()
        }
        return cls(bool(document["batched"]), int(document["rows"]), inputs)


def feature_matrix(array: np.ndarray, batched: bool) -> np.ndarray:
    """(rows, features) float64 view of one input's values."""
    rows = array.shape[0] if batched and array.ndim else 1
    return np.asarray(array, dtype=np.float64).reshape(rows, -1)


def profile_input(name: str, values: np.ndarray, bins: int) -> InputProfile:
    """Profile a (rows, features) matrix."""
    if values.shape[0] < bins:
        raise ValueError(f"input '{name}': {values.shape[0]} rows is too few for {bins} bins")
    edges, fractions, quantiles, cdf = [], [], [], []
    for column in values.T:
        inner = np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(inner, column, side="left"), minlength=len(inner) + 1)
        points = np.quantile(column, _CDF_POINTS)
        sorted_column = np.sort(column)
        edges.append(inner.tolist())
        fractions.append((counts / len(column)).tolist())
        quantiles.append(points.tolist())
        cdf.append((np.searchsorted(sorted_column, points, side="right") / len(column)).tolist())
    return InputProfile(name, edges, fractions, quantiles, cdf)


def build_profile(
    data: dict[str, np.ndarray], batched: bool, bins: int = 10, max_features: int = 256
) -> ReferenceProfile:
    """Profile every input in ``data``; each array's first axis is the sample axis."""
    inputs: dict[str, InputProfile] = {}
    rows = 0
    for name, array in data.items():
        # Samples stacked on axis 0; for a batched model each sample may itself be a batch of rows.
        matrix = np.asarray(array, dtype=np.float64).reshape(-1, _features(array, batched))
        if matrix.shape[1] > max_features:
            raise ValueError(
                f"input '{name}' has {matrix.shape[1]} features per row; at most {max_features} are profiled"
            )
        inputs[name] = profile_input(name, matrix, bins)
        rows = max(rows, matrix.shape[0])
    if not inputs:
        raise ValueError("no input to profile")
    return ReferenceProfile(batched, rows, inputs)


def _features(array: np.ndarray, batched: bool) -> int:
    shape = array.shape[1:]  # axis 0 stacks samples (rows, for a batched model)
    return int(np.prod(shape)) if shape else 1
