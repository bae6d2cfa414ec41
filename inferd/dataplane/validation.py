"""Check a request against the model signature before it may enter a batch.

The same checks run twice: on what a request declares (names, datatypes, shapes), by the codec
through ``SignatureAdmission`` before any data is decoded, and on the decoded tensors here, which
stays the authority (a canary candidate's signature, a version swapped in between).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from inferd.errors import InvalidRequest, unknown_input, unknown_output
from inferd.runtimes.base import Signature
from inferd.types import DeclaredInput, InferRequest, TensorSpec

Shape = tuple[int, ...]


@dataclass(slots=True)  # not frozen: built per request, and a frozen __init__ costs 3x
class ValidatedInputs:
    arrays: dict[str, np.ndarray]
    rows: int
    # Non-batch shapes in signature order: requests merge only when these are equal.
    group: tuple[Shape, ...]
    outputs: tuple[str, ...]


@dataclass(slots=True)  # not frozen: built per request
class Admitted:
    """What ``SignatureAdmission`` found, kept by the codec on the request it decoded."""

    signature: Signature
    rows: int
    group: tuple[Shape, ...]


def validate(request: InferRequest, signature: Signature) -> ValidatedInputs:
    admitted = request.admitted
    arrays = {tensor.name: tensor.data for tensor in request.inputs}
    if isinstance(admitted, Admitted) and admitted.signature is signature:
        # Checked as declared against this very signature (requested outputs included), and the
        # codecs shape every tensor as declared: the same checks again would find the same.
        requested = request.outputs
        outputs = tuple([o.name for o in requested]) if requested else signature.output_names
        return ValidatedInputs(arrays, admitted.rows, admitted.group, outputs or signature.output_names)
    rows, group = check_declared(request.model, signature, request.inputs)
    names = [o.name for o in request.outputs] if request.outputs else None
    return ValidatedInputs(arrays, rows, group, check_outputs(request.model, signature, names))


class SignatureAdmission:
    """The ``Admission`` of one served model handle: its signature and its element limit."""

    __slots__ = ("_max_elements", "_model", "_signature", "input_count")

    def __init__(self, model: str, signature: Signature, max_elements: int) -> None:
        self._model = model
        self._signature = signature
        self._max_elements = max_elements
        self.input_count = len(signature.inputs)

    def check_inputs(self, declared: Iterable[DeclaredInput]) -> Admitted:
        rows, group = check_declared(self._model, self._signature, declared, self._max_elements)
        return Admitted(self._signature, rows, group)

    def check_outputs(self, names: Iterable[str]) -> None:
        check_outputs(self._model, self._signature, names)


def check_declared(
    model: str,
    signature: Signature,
    inputs: Iterable[DeclaredInput],
    max_elements: int | None = None,
) -> tuple[int, tuple[Shape, ...]]:
    """Check inputs' names, datatypes and shapes (and element counts, given a limit) against the
    signature; returns the batch rows and the non-batch shapes. ``inputs`` is read once, lazily.

    Runs per request: lookups by name and no generators (docs/performance.md)."""
    specs = signature.input_specs
    shapes: dict[str, Shape] = {}
    for tensor in inputs:
        name = tensor.name
        spec = specs.get(name)
        if spec is None:
            expected = ", ".join(s.name for s in signature.inputs)
            raise InvalidRequest(unknown_input(name, model, f"its inputs are: {expected}"))
        if name in shapes:
            raise InvalidRequest(f"input '{name}' appears more than once")
        if tensor.datatype != spec.datatype:
            raise InvalidRequest(
                f"input '{name}' of model '{model}' expects datatype {spec.datatype}, got {tensor.datatype}"
            )
        shape = tensor.shape
        if max_elements is not None and math.prod(shape) > max_elements:
            raise InvalidRequest(
                f"input '{name}' has {math.prod(shape)} elements, more than the limit of {max_elements}"
            )
        shapes[name] = shape
    # Every name is known and unique here, so as many as the signature has means none is missing.
    if len(shapes) != len(signature.inputs):
        missing = [s.name for s in signature.inputs if s.name not in shapes]
        raise InvalidRequest(
            f"model '{model}' expects input(s) {', '.join(missing)}, which the request lacks"
        )
    if signature.max_batch_size <= 0:
        return 1, tuple([_check_shape(shapes[spec.name], spec, False) for spec in signature.inputs])
    rows = _batch_rows(shapes, signature, model)
    return rows, tuple([_check_shape(shapes[spec.name], spec, True) for spec in signature.inputs])


def _batch_rows(shapes: dict[str, Shape], signature: Signature, model: str) -> int:
    rows = -1
    disagree = False
    for spec in signature.inputs:
        shape = shapes[spec.name]
        if len(shape) != len(spec.dims) + 1:
            raise InvalidRequest(
                f"input '{spec.name}' expects shape {_shape_text((-1, *spec.dims))} (batch first), "
                f"got {list(shape)}"
            )
        if rows < 0:
            rows = shape[0]
        elif shape[0] != rows:
            disagree = True
    if disagree:
        sizes = sorted({shapes[spec.name][0] for spec in signature.inputs})
        raise InvalidRequest(f"inputs disagree on the batch size: {sizes}")
    if rows < 1:
        raise InvalidRequest("the batch dimension must be at least 1")
    if rows > signature.max_batch_size:
        raise InvalidRequest(
            f"batch size {rows} exceeds the max_batch_size {signature.max_batch_size} of model '{model}'"
        )
    return int(rows)


def _check_shape(full: Shape, spec: TensorSpec, batched: bool) -> Shape:
    shape = full[1:] if batched else full
    expected = spec.dims
    if shape == expected:  # no -1 among the dims: the common case is one comparison
        return shape
    fits = len(shape) == len(expected) and all(
        e == -1 or e == s for e, s in zip(expected, shape, strict=True)
    )
    if not fits:
        shown = (-1, *expected) if batched else expected
        raise InvalidRequest(f"input '{spec.name}' expects shape {_shape_text(shown)}, got {list(full)}")
    return tuple(shape)


def check_outputs(model: str, signature: Signature, names: Iterable[str] | None) -> tuple[str, ...]:
    """The outputs to return: those named (each known, once; read lazily), or all without a list."""
    if names is None:
        return signature.output_names
    chosen: list[str] = []
    for name in names:
        if name in chosen:
            raise InvalidRequest(f"output '{name}' is requested more than once")
        if name not in signature.output_specs:
            known = ", ".join(s.name for s in signature.outputs)
            raise InvalidRequest(unknown_output(name, model, f"its outputs are: {known}"))
        chosen.append(name)
    return tuple(chosen) or signature.output_names


def _shape_text(dims: Shape) -> str:
    return "[" + ", ".join("-1" if d == -1 else str(d) for d in dims) + "]"
