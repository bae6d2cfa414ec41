"""Cached outputs decode to exactly what was stored, and a foreign value is refused cleanly."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.cache.entries import CorruptEntry, decode_outputs, encode_outputs


def test_round_trip_of_every_kind_of_tensor() -> None:
    strings = np.empty((2, 2), dtype=object)
    strings[:] = [[b"", b"a"], ["\u00e9".encode(), b"\x00\xff"]]
    outputs = {
        "f": ("FP32", np.arange(6, dtype=np.float32).reshape(2, 3)),
        "i": ("INT64", np.array([[-(2**63), 2**63 - 1]], dtype=np.int64)),
        "b": ("BOOL", np.array([True, False])),
        "s": ("BYTES", strings),
        "empty": ("FP16", np.zeros((0, 4), dtype=np.float16)),
        "scalar": ("FP64", np.array(2.5)),
        "view": ("INT32", np.arange(10, dtype=np.int32)[::3]),
    }
    decoded = decode_outputs(encode_outputs(outputs))
    assert list(decoded) == list(outputs)
    for name, (datatype, array) in outputs.items():
        got_type, got = decoded[name]
        assert got_type == datatype and got.shape == array.shape
        assert got.tolist() == array.tolist()


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x01",
        b"\xff\xff\xff\xff",
        b"\x02\x00\x00\x00[]x",
        b"\x04\x00\x00\x00null",
        b"\x03\x00\x00\x00[1]",
    ],
)
def test_foreign_values_are_corrupt_entries(value: bytes) -> None:
    with pytest.raises(CorruptEntry):
        decode_outputs(value)


def test_truncated_and_padded_entries_are_refused() -> None:
    value = encode_outputs({"x": ("FP32", np.ones(4, np.float32))})
    with pytest.raises(CorruptEntry):
        decode_outputs(value[:-1])
    with pytest.raises(CorruptEntry):
        decode_outputs(value + b"\x00")
    bad_type = value.replace(b"FP32", b"XX32")
    with pytest.raises(CorruptEntry):
        decode_outputs(bad_type)
