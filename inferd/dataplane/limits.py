"""Bounds on the values of request tensors: sizes, NaN/Inf, per-input ranges (docs/hardening.md).

Built once per model; per request, the default costs one size comparison per input. The O(n) checks
(NaN/Inf, ranges, BYTES lengths) run only where a model's config.yaml asks for them or data is BYTES.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inferd.errors import InvalidRequest
from inferd.model_config import ModelConfig
from inferd.runtimes.base import Signature

# BF16 words whose exponent bits are all set are NaN or +-Inf.
_BF16_EXPONENT = 0x7F80


@dataclass(frozen=True, slots=True)
class InputChecks:
    max_elements: int
    max_bytes_length: int
    # Floating-point inputs (name -> datatype) in which NaN and +-Inf are refused.
    finite: dict[str, str]
    ranges: dict[str, tuple[float | None, float | None]]


def build_checks(
    config: ModelConfig, signature: Signature, max_elements: int, max_bytes_length: int
) -> InputChecks:
    limits = config.limits
    finite = {}
    if not limits.allow_nan:
        finite = {
            s.name: s.datatype for s in signature.inputs if s.datatype in ("FP16", "FP32", "FP64", "BF16")
        }
    ranges = {o.name: (o.min, o.max) for o in config.inputs if o.min is not None or o.max is not None}
    return InputChecks(
        max_elements=limits.max_elements or max_elements,
        max_bytes_length=max_bytes_length if limits.max_bytes_length is None else limits.max_bytes_length,
        finite=finite,
        ranges=ranges,
    )


def check_inputs(checks: InputChecks, arrays: dict[str, np.ndarray]) -> None:
    for name, array in arrays.items():
        if array.size > checks.max_elements:
            raise InvalidRequest(
                f"input '{name}' has {array.size} elements, more than the limit of {checks.max_elements}"
            )
        if array.dtype.kind == "O" and array.size:
            longest = max(map(len, array.ravel().tolist()))
            if longest > checks.max_bytes_length:
                raise InvalidRequest(
                    f"input '{name}' has a BYTES element of {longest} bytes, more than the limit of "
                    f"{checks.max_bytes_length}"
                )
    if checks.finite:
        for name, datatype in checks.finite.items():
            array = arrays[name]
            bad = (array & _BF16_EXPONENT) == _BF16_EXPONENT if datatype == "BF16" else ~np.isfinite(array)
            if bad.any():
                raise InvalidRequest(
                    f"input '{name}' holds NaN or infinity, which this model does not accept"
                )
    for name, (low, high) in checks.ranges.items():
        _check_range(name, arrays[name], low, high)


def _check_range(name: str, array: np.ndarray, low: float | None, high: float | None) -> None:
    if array.dtype.kind not in "biuf" or not array.size:
        return
    # Written as "not (inside)" so that NaN, which compares false with everything, is refused too.
    if low is not None and not (array >= low).all():
        raise InvalidRequest(f"input '{name}' has a value below its minimum {low:g} (or NaN)")
    if high is not None and not (array <= high).all():
        raise InvalidRequest(f"input '{name}' has a value above its maximum {high:g} (or NaN)")
