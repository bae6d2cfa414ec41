"""Reading a request's declared inputs under a model's Admission, before any tensor data."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from inferd.types import Admission, DeclaredInput

_T = TypeVar("_T")
_R = TypeVar("_R")
_D = TypeVar("_D", bound=DeclaredInput)


def admit_inputs(
    admission: Admission | None, entries: Sequence[_R], declare: Callable[[_R], _D]
) -> tuple[list[_D], object]:
    """Every entry declared (``declare`` checks its header) and checked by ``admission``. Returns them
    and the admission's token for ``InferRequest.admitted`` (None without an admission).

    No more entries than the model has inputs (every valid request) are declared first, then checked
    in one call; more are declared one at a time as the check reads them, so a refusal stops the
    build: many entries cost no more than the model's inputs either way."""
    if admission is None:
        return [declare(entry) for entry in entries], None
    if len(entries) <= admission.input_count:
        declared = [declare(entry) for entry in entries]
        return declared, admission.check_inputs(declared)
    inputs: list[_D] = []
    reading: Iterator[_D] = kept(map(declare, entries), inputs)
    return inputs, admission.check_inputs(reading)


def kept(items: Iterable[_T], into: list[_T]) -> Iterator[_T]:
    """Yield ``items`` while appending each to ``into``, so a lazy reader's items are kept."""
    for item in items:
        into.append(item)
        yield item
