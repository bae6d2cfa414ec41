"""Reading a request's declared inputs under a model's Admission, before any tensor data."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from inferd.types import Admission, DeclaredInput

_T = TypeVar("_T")
_D = TypeVar("_D", bound=DeclaredInput)


def admit_inputs(admission: Admission | None, declared: Iterable[_D]) -> tuple[list[_D], object]:
    """Every declared input, each checked by ``admission`` as it is built: a refusal stops the build
    (so many entries cost no more than the model's inputs). Returns them and the admission's token
    for ``InferRequest.admitted`` (None without an admission)."""
    inputs: list[_D] = []
    if admission is None:
        inputs.extend(declared)
        return inputs, None
    reading: Iterator[_D] = kept(declared, inputs)
    return inputs, admission.check_inputs(reading)


def kept(items: Iterable[_T], into: list[_T]) -> Iterator[_T]:
    """Yield ``items`` while appending each to ``into``, so a lazy reader's items are kept."""
    for item in items:
        into.append(item)
        yield item
