"""admit_inputs: declared then checked in one call up to the model's input count, lazily past it."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from inferd.errors import InvalidRequest
from inferd.protocol.declared import admit_inputs
from inferd.types import DeclaredInput, Tensor


class _Counting:
    """An Admission of a two-input model that refuses any name but ``a`` and ``b``."""

    input_count = 2

    def __init__(self) -> None:
        self.shown: list[str] = []

    def check_inputs(self, declared: Iterable[DeclaredInput]) -> object:
        for tensor in declared:
            self.shown.append(tensor.name)
            if tensor.name not in ("a", "b"):
                raise InvalidRequest(f"no input '{tensor.name}'")
        return "admitted"

    def check_outputs(self, names: Iterable[str]) -> None:
        pass


declared: list[str] = []  # the names _declare was asked for, in order


def _declare(name: str) -> Tensor:
    declared.append(name)
    return Tensor(name, "FP32", None)  # type: ignore[arg-type]  # only the header is read


def test_as_many_entries_as_inputs_are_declared_then_checked() -> None:
    declared.clear()
    admission = _Counting()
    inputs, token = admit_inputs(admission, ["a", "b"], _declare)
    assert [t.name for t in inputs] == ["a", "b"] and token == "admitted"
    assert admission.shown == ["a", "b"]


def test_many_entries_stop_at_the_first_refusal() -> None:
    # A million entries: the refusal of the third stops the build there, so the work is bounded by
    # the model's inputs, not by what the request holds.
    declared.clear()
    admission = _Counting()
    with pytest.raises(InvalidRequest, match="no input 'x'"):
        admit_inputs(admission, ["a", "b", *["x"] * 1_000_000], _declare)
    assert declared == ["a", "b", "x"]
