"""Tensors through a shared region: every datatype round-trips, BYTES length-prefixed, and a region
grows (the reader following) when a batch does not fit."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.runtimes.shm import Region, new_shared_file


@pytest.fixture
def pair() -> tuple[Region, Region]:
    fd = new_shared_file()
    return Region(fd), Region(fd)  # a writer and a reader of the same file, as two processes map it


def test_numeric_and_bytes_tensors_round_trip(pair: tuple[Region, Region]) -> None:
    writer, reader = pair
    tensors = {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "i64": np.array([[-1], [2**40]], dtype=np.int64),
        "bool": np.array([True, False, True]),
        "f16": np.array([0.5, -2.0], dtype=np.float16),
        "strided": np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2],  # not contiguous
        "text": np.array([b"", "é".encode(), b"\x00abc"], dtype=object),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    layout = writer.write(tensors)
    reader.follow(writer.size)
    views = reader.read(layout, copy=False)
    for name, array in tensors.items():
        assert views[name].dtype == array.dtype and views[name].shape == array.shape, name
        assert np.array_equal(views[name], array), name
    assert not views["f32"].flags.writeable  # inputs are read-only views of the region
    copies = reader.read(layout, copy=True)
    writer.write({"f32": np.full((3, 4), 7, dtype=np.float32)})
    assert np.array_equal(copies["f32"], tensors["f32"])  # copies outlive the next write


def test_a_batch_larger_than_the_region_grows_it(pair: tuple[Region, Region]) -> None:
    writer, reader = pair
    first = writer.size
    big = np.random.default_rng(0).random((3 * first // 8,))  # 3x the region
    texts = np.array([b"x" * first], dtype=object)
    layout = writer.write({"big": big, "texts": texts})
    assert writer.size >= big.nbytes + len(texts[0]) > first
    reader.follow(writer.size)
    out = reader.read(layout, copy=True)
    assert np.array_equal(out["big"], big) and out["texts"][0] == texts[0]


def test_a_layout_outside_the_region_is_refused(pair: tuple[Region, Region]) -> None:
    writer, reader = pair
    with pytest.raises(ValueError, match="outside the shared region"):
        reader.read([("x", "<f4", (4,), writer.size - 8, 16)], copy=True)
