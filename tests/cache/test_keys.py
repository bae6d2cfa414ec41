"""Cache keys change with everything that decides the answer and with nothing else."""

from __future__ import annotations

from typing import Any

import numpy as np

from inferd.cache.keys import response_key

A = np.arange(8, dtype=np.float32).reshape(2, 4)


def _key(**changes: Any) -> bytes:
    args: dict[str, Any] = {
        "model": "m",
        "version": "1",
        "inputs": {"x": ("FP32", A)},
        "outputs": ("y",),
        "parameters": {},
    }
    args.update(changes)
    return response_key(**args)


def test_equal_requests_have_equal_keys_whatever_the_transport_details() -> None:
    copy = A.copy()
    assert _key() == _key(inputs={"x": ("FP32", copy)})
    assert _key() == _key(parameters={"binary_data_output": True, "timeout": 5, "priority": 1})
    # Non-contiguous and big-endian arrays with the same values hash like the plain array.
    wide = np.zeros((2, 8), np.float32)
    wide[:, ::2] = A
    assert _key() == _key(inputs={"x": ("FP32", wide[:, ::2])})
    assert _key() == _key(inputs={"x": ("FP32", A.astype(">f4"))})


def test_every_part_of_a_request_that_decides_the_answer_changes_the_key() -> None:
    keys = {
        _key(),
        _key(model="n"),
        _key(version="2"),
        _key(inputs={"z": ("FP32", A)}),
        _key(inputs={"x": ("INT32", A.view(np.int32))}),
        _key(inputs={"x": ("FP32", A.reshape(4, 2))}),
        _key(inputs={"x": ("FP32", A + 1)}),
        _key(outputs=("y", "z")),
        _key(outputs=()),
        _key(parameters={"temperature": 0.5}),
    }
    assert len(keys) == 10


def test_input_order_does_not_matter_and_names_cannot_run_into_each_other() -> None:
    b = np.ones(1, np.int8)
    assert _key(inputs={"x": ("FP32", A), "w": ("INT8", b)}) == _key(
        inputs={"w": ("INT8", b), "x": ("FP32", A)}
    )
    assert _key(model="ab", version="c") != _key(model="a", version="bc")


def test_bytes_elements_are_delimited() -> None:
    def bytes_key(*elements: bytes) -> bytes:
        array = np.empty(len(elements), dtype=object)
        array[:] = list(elements)
        return _key(inputs={"s": ("BYTES", array)})

    assert bytes_key(b"ab", b"c") != bytes_key(b"a", b"bc")
    assert bytes_key(b"ab", b"c") == bytes_key(b"ab", b"c")
    assert bytes_key(b"", b"") != bytes_key(b"")
