"""Merge the inputs of several requests into one batch and split the outputs back, with views."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inferd.errors import ExecutionError
from inferd.runtimes.response_parameters import parameters_of, with_parameters


def concatenate(requests: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(requests) == 1:
        return requests[0]
    return {name: np.concatenate([inputs[name] for inputs in requests]) for name in requests[0]}


def split(outputs: dict[str, np.ndarray], rows: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Slice every output along the batch dimension, ``rows[i]`` rows for request ``i``."""
    total = sum(rows)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise ExecutionError(
                f"the model returned output '{name}' with shape {list(array.shape)} for a batch of "
                f"{total} rows; a batching model must return one row per input row"
            )
    if len(rows) == 1:
        return [outputs]
    parameters = parameters_of(outputs)  # a model's response parameters are every request's
    parts = []
    start = 0
    for count in rows:
        end = start + count
        parts.append(with_parameters({name: array[start:end] for name, array in outputs.items()}, parameters))
        start = end
    return parts
