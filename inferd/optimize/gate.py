"""The accuracy gate: a candidate's outputs against the served version's, per output, on the samples."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

_CLASSIFIER_WORDS = ("logit", "prob", "score", "label", "class")


@dataclass(frozen=True, slots=True)
class Thresholds:
    # Allowed drop below 1 of the mean cosine similarity and of the top-1 agreement.
    max_drop: float = 0.01
    # The worst single row's cosine similarity.
    min_cosine: float = 0.95
    # Largest element-wise absolute difference; None: reported, not gated.
    max_abs_error: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class OutputFigures:
    name: str
    kind: str  # "float" or "classifier" (argmax / label agreement) or "other"
    mean_cosine: float | None = None
    min_cosine: float | None = None
    max_abs_error: float | None = None
    top1_agreement: float | None = None
    failures: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        document = {k: v for k, v in asdict(self).items() if v is not None and k != "failures"}
        document["failures"] = list(self.failures)
        return document


@dataclass(frozen=True, slots=True)
class Verdict:
    outputs: tuple[OutputFigures, ...] = field(default=())
    # Set when the candidate could not be compared at all (it did not run, or changed its outputs).
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and all(not o.failures for o in self.outputs)

    @property
    def reasons(self) -> list[str]:
        return [self.error] if self.error else [f for o in self.outputs for f in o.failures]

    def worst(self, key: str) -> float | None:
        values: list[float] = [getattr(o, key) for o in self.outputs if getattr(o, key) is not None]
        if not values:
            return None
        return max(values) if key == "max_abs_error" else min(values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "error": self.error or None,
            "outputs": [o.as_dict() for o in self.outputs],
        }


def is_classifier(name: str, element_type: str, shape: tuple[int, ...]) -> bool:
    """Integer outputs (labels) and 2-D float outputs named like class scores (logits, probabilities)."""
    if element_type in ("tensor(int64)", "tensor(int32)"):
        return True
    lowered = name.lower()
    return len(shape) == 2 and shape[1] >= 2 and any(w in lowered for w in _CLASSIFIER_WORDS)


def judge(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    types: dict[str, str],
    thresholds: Thresholds,
    classifiers: frozenset[str] = frozenset(),
) -> Verdict:
    figures = []
    for name, expected in reference.items():
        got = candidate.get(name)
        if got is None:
            return Verdict(error=f"output '{name}' is missing from the candidate")
        if got.shape != expected.shape:
            return Verdict(
                error=f"output '{name}' has shape {got.shape}, the served version {expected.shape}"
            )
        classifier = name in classifiers or is_classifier(name, types.get(name, ""), expected.shape)
        figures.append(_output(name, expected, got, classifier, thresholds))
    return Verdict(tuple(figures))


def _output(
    name: str, expected: np.ndarray, got: np.ndarray, classifier: bool, limits: Thresholds
) -> OutputFigures:
    failures: list[str] = []
    floor = 1.0 - limits.max_drop
    if not np.issubdtype(expected.dtype, np.floating):
        if not classifier:
            return OutputFigures(name, "other", failures=_equal(name, expected, got))
        agreement = float(np.mean(_rows(expected) == _rows(got)).item()) if expected.size else 1.0
        if agreement < floor:
            failures.append(f"{name}: top-1 agreement {agreement:.4f} < {floor:.4f}")
        return OutputFigures(name, "classifier", top1_agreement=agreement, failures=tuple(failures))
    a, b = _rows(expected).astype(np.float64), _rows(got).astype(np.float64)
    if not (np.isfinite(b).all() or not np.isfinite(a).all()):
        return OutputFigures(name, "float", failures=(f"{name}: the candidate gives NaN or infinity",))
    cosines = _cosines(a, b)
    mean, worst = float(cosines.mean()), float(cosines.min())
    abs_error = float(np.max(np.abs(a - b))) if a.size else 0.0
    if mean < floor:
        failures.append(f"{name}: mean cosine {mean:.4f} < {floor:.4f}")
    if worst < limits.min_cosine:
        failures.append(f"{name}: min cosine {worst:.4f} < {limits.min_cosine:.4f}")
    if limits.max_abs_error is not None and abs_error > limits.max_abs_error:
        failures.append(f"{name}: max abs error {abs_error:.4g} > {limits.max_abs_error:.4g}")
    top1 = None
    if classifier and a.shape[1] >= 2:
        top1 = float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))
        if top1 < floor:
            failures.append(f"{name}: top-1 agreement {top1:.4f} < {floor:.4f}")
    kind = "classifier" if top1 is not None else "float"
    return OutputFigures(name, kind, mean, worst, abs_error, top1, tuple(failures))


def _rows(array: np.ndarray) -> np.ndarray:
    """One row per sample: (rows, elements)."""
    return array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row pair; two all-zero rows agree (1), one all-zero row does not (0)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("ij,ij->i", a, b) / (na * nb)
    cos = np.where(both_zero, 1.0, np.nan_to_num(cos, nan=0.0))
    return np.clip(cos, -1.0, 1.0)


def _equal(name: str, expected: np.ndarray, got: np.ndarray) -> tuple[str, ...]:
    same = float(np.mean(_rows(expected) == _rows(got))) if expected.size else 1.0
    return () if math.isclose(same, 1.0) else (f"{name}: {1 - same:.2%} of elements differ",)
