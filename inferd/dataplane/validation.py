"""Check a request against the model signature before it may enter a batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inferd.errors import InvalidRequest
from inferd.runtimes.base import Signature
from inferd.types import InferRequest, TensorSpec


@dataclass(frozen=True, slots=True)
class ValidatedInputs:
    arrays: dict[str, np.ndarray]
    rows: int
    # Non-batch shapes in signature order: requests merge only when these are equal.
    group: tuple[tuple[int, ...], ...]
    outputs: tuple[str, ...]


def validate(request: InferRequest, signature: Signature) -> ValidatedInputs:
    model = request.model
    arrays: dict[str, np.ndarray] = {}
    for tensor in request.inputs:
        spec = signature.input(tensor.name)
        if spec is None:
            expected = ", ".join(s.name for s in signature.inputs)
            raise InvalidRequest(f"model '{model}' has no input '{tensor.name}'; its inputs are: {expected}")
        if tensor.name in arrays:
            raise InvalidRequest(f"input '{tensor.name}' appears more than once")
        if tensor.datatype != spec.datatype:
            raise InvalidRequest(
                f"input '{tensor.name}' of model '{model}' expects datatype {spec.datatype}, "
                f"got {tensor.datatype}"
            )
        arrays[tensor.name] = tensor.data
    missing = [spec.name for spec in signature.inputs if spec.name not in arrays]
    if missing:
        raise InvalidRequest(
            f"model '{model}' expects input(s) {', '.join(missing)}, which the request lacks"
        )

    rows = 1
    if signature.max_batch_size > 0:
        rows = _batch_rows(arrays, signature, model)
    group = tuple(
        _check_shape(arrays[spec.name], spec, signature.max_batch_size > 0) for spec in signature.inputs
    )
    return ValidatedInputs(arrays, rows, group, _requested_outputs(request, signature))


def _batch_rows(arrays: dict[str, np.ndarray], signature: Signature, model: str) -> int:
    sizes = set()
    for spec in signature.inputs:
        shape = arrays[spec.name].shape
        if len(shape) != len(spec.dims) + 1:
            raise InvalidRequest(
                f"input '{spec.name}' expects shape {_shape_text((-1, *spec.dims))} (batch first), "
                f"got {list(shape)}"
            )
        sizes.add(shape[0])
    if len(sizes) > 1:
        raise InvalidRequest(f"inputs disagree on the batch size: {sorted(sizes)}")
    rows = sizes.pop()
    if rows < 1:
        raise InvalidRequest("the batch dimension must be at least 1")
    if rows > signature.max_batch_size:
        raise InvalidRequest(
            f"batch size {rows} exceeds the max_batch_size {signature.max_batch_size} of model '{model}'"
        )
    return int(rows)


def _check_shape(array: np.ndarray, spec: TensorSpec, batched: bool) -> tuple[int, ...]:
    shape = array.shape[1:] if batched else array.shape
    expected = spec.dims
    fits = len(shape) == len(expected) and all(
        e == -1 or e == s for e, s in zip(expected, shape, strict=True)
    )
    if not fits:
        shown = (-1, *expected) if batched else expected
        raise InvalidRequest(
            f"input '{spec.name}' expects shape {_shape_text(shown)}, got {list(array.shape)}"
        )
    return tuple(shape)


def _requested_outputs(request: InferRequest, signature: Signature) -> tuple[str, ...]:
    if not request.outputs:
        return tuple(spec.name for spec in signature.outputs)
    names: list[str] = []
    for output in request.outputs:
        if output.name in names:
            raise InvalidRequest(f"output '{output.name}' is requested more than once")
        if signature.output(output.name) is None:
            known = ", ".join(s.name for s in signature.outputs)
            raise InvalidRequest(
                f"model '{request.model}' has no output '{output.name}'; its outputs are: {known}"
            )
        names.append(output.name)
    return tuple(names)


def _shape_text(dims: tuple[int, ...]) -> str:
    return "[" + ", ".join("-1" if d == -1 else str(d) for d in dims) + "]"
