"""A model's checks on what a request declares, run by the codecs before any data is decoded."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from inferd.dataplane.validation import SignatureAdmission
from inferd.errors import InvalidRequest
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec("a", "FP32", (4,)), TensorSpec("b", "INT64", (-1,))),
    outputs=(TensorSpec("y", "FP32", (4,)),),
    max_batch_size=8,
)


@dataclass(frozen=True)
class Declared:
    name: str
    datatype: str
    shape: tuple[int, ...]


def _admission(max_elements: int = 1000) -> SignatureAdmission:
    return SignatureAdmission("m", SIGNATURE, max_elements)


def test_a_request_the_model_accepts_passes() -> None:
    _admission().check_inputs([Declared("a", "FP32", (3, 4)), Declared("b", "INT64", (3, 7))])
    _admission().check_outputs(["y"])


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ([Declared("a", "FP32", (9, 4)), Declared("b", "INT64", (9, 1))], "exceeds the max_batch_size 8"),
        ([Declared("a", "FP32", (2, 5)), Declared("b", "INT64", (2, 1))], r"expects shape \[-1, 4\]"),
        ([Declared("a", "FP32", (2, 4)), Declared("b", "INT64", (3, 1))], "disagree on the batch size"),
        ([Declared("a", "FP16", (1, 4)), Declared("b", "INT64", (1, 1))], "expects datatype FP32"),
        ([Declared("a", "FP32", (1, 4))], "lacks"),
        ([Declared("c", "FP32", (1, 4))], "unexpected inference input 'c'"),
        ([Declared("a", "FP32", (1, 4)), Declared("b", "INT64", (1, 2000))], "more than the limit of 1000"),
    ],
)
def test_declared_inputs_the_model_refuses(declared: list[Declared], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        _admission().check_inputs(declared)


def _endless(first: Declared, then: Declared) -> Iterator[Declared]:
    yield first
    yield from itertools.repeat(then)


def test_inputs_are_read_lazily_and_the_read_stops_at_the_first_refusal() -> None:
    # An endless stream of entries: the check can only return by refusing early, whatever the
    # number of entries a request holds (the codecs build each entry only when it is read).
    a = Declared("a", "FP32", (1, 4))
    with pytest.raises(InvalidRequest, match="more than once"):
        _admission().check_inputs(_endless(a, a))
    with pytest.raises(InvalidRequest, match="unexpected inference input"):
        _admission().check_inputs(_endless(a, Declared("zz", "FP32", (1, 4))))
    with pytest.raises(InvalidRequest, match="more than once"):
        _admission().check_outputs(itertools.repeat("y"))


def test_unknown_outputs_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="unexpected inference output 'z'"):
        _admission().check_outputs(["y", "z"])
