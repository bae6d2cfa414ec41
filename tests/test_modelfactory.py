"""The test models load in onnxruntime and compute what the end-to-end tests expect of them."""

from __future__ import annotations

import time
from pathlib import Path

import modelfactory as mf
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto

NUMPY_TYPES: dict[int, type[np.generic]] = {
    TensorProto.BOOL: np.bool_,
    TensorProto.UINT8: np.uint8,
    TensorProto.UINT16: np.uint16,
    TensorProto.UINT32: np.uint32,
    TensorProto.UINT64: np.uint64,
    TensorProto.INT8: np.int8,
    TensorProto.INT16: np.int16,
    TensorProto.INT32: np.int32,
    TensorProto.INT64: np.int64,
    TensorProto.FLOAT16: np.float16,
    TensorProto.FLOAT: np.float32,
    TensorProto.DOUBLE: np.float64,
    TensorProto.STRING: np.object_,
}


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _sample(elem_type: int, shape: tuple[int, ...]) -> np.ndarray:
    values = np.arange(int(np.prod(shape))).reshape(shape)
    if elem_type == TensorProto.STRING:
        return np.array([f"s{v}é" for v in values.flat], dtype=np.object_).reshape(shape)
    return (values % 2 if elem_type == TensorProto.BOOL else values).astype(NUMPY_TYPES[elem_type])


@pytest.mark.parametrize("elem_type", list(NUMPY_TYPES), ids=TensorProto.DataType.Name)
def test_identity_round_trips_every_numpy_type(tmp_path: Path, elem_type: int) -> None:
    path = tmp_path / "model.onnx"
    mf.identity(path, elem_type)
    session = _session(path)
    assert session.get_inputs()[0].shape == ["batch", 4]
    for batch in (1, 3):
        data = _sample(elem_type, (batch, 4))
        (out,) = session.run(None, {"INPUT0": data})
        assert out.dtype == data.dtype
        np.testing.assert_array_equal(out, data)


def test_identity_bfloat16_runs_through_ortvalues(tmp_path: Path) -> None:
    # numpy has no bfloat16, so the raw bits travel as uint16 in OrtValues typed BFLOAT16.
    path = tmp_path / "model.onnx"
    mf.identity(path, TensorProto.BFLOAT16)
    session = _session(path)
    bits = np.array([[0x3F80, 0x4000, 0xC040, 0x0000]], dtype=np.uint16)  # 1, 2, -3, 0
    result = np.zeros_like(bits)
    binding = session.io_binding()
    binding.bind_ortvalue_input(
        "INPUT0", ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, TensorProto.BFLOAT16)
    )
    # A preallocated output, because ORT's Python API cannot hand back a bfloat16 tensor as numpy.
    binding.bind_ortvalue_output(
        "OUTPUT0", ort.OrtValue.ortvalue_from_numpy_with_onnx_type(result, TensorProto.BFLOAT16)
    )
    session.run_with_iobinding(binding)
    np.testing.assert_array_equal(result, bits)


def test_identity_without_batching_and_custom_dims(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    mf.identity(path, TensorProto.FLOAT, batching=False, dims=[2, "n"])
    session = _session(path)
    assert session.get_inputs()[0].shape == [2, "n"]
    data = np.ones((2, 5), dtype=np.float32)
    np.testing.assert_array_equal(session.run(None, {"INPUT0": data})[0], data)


@pytest.mark.parametrize("elem_type", [TensorProto.INT32, TensorProto.FLOAT])
def test_add_sub(tmp_path: Path, elem_type: int) -> None:
    path = tmp_path / "model.onnx"
    mf.add_sub(path, elem_type)
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["INPUT0", "INPUT1"]
    assert [o.shape for o in session.get_outputs()] == [["batch", 16], ["batch", 16]]
    a = _sample(elem_type, (2, 16))
    b = np.ones((2, 16), dtype=a.dtype)
    out0, out1 = session.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(out0, a + b)
    np.testing.assert_array_equal(out1, a - b)


def test_add_sub_without_batching(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    mf.add_sub(path, batching=False)
    assert _session(path).get_inputs()[0].shape == [16]


def test_fixed_shape(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    mf.fixed_shape(path)
    session = _session(path)
    assert session.get_inputs()[0].shape == [3, 4]
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(session.run(None, {"INPUT0": data})[0], data * 2)


@pytest.mark.parametrize("n", [1, 5])
def test_dynamic_dims(tmp_path: Path, n: int) -> None:
    path = tmp_path / "model.onnx"
    mf.dynamic_dims(path)
    session = _session(path)
    assert session.get_inputs()[0].shape == ["batch", "n"]
    assert [o.shape for o in session.get_outputs()] == [["batch", 1], ["batch", "n"]]
    data = np.arange(3 * n, dtype=np.float32).reshape(3, n)
    sums, tripled = session.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": data})
    np.testing.assert_allclose(sums, data.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(tripled, data * 3)


def test_gather_good_and_bad_index(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    mf.gather(path)
    session = _session(path)  # an out-of-range index must not be caught at load
    (out,) = session.run(None, {"INDEX": np.array([[3], [0], [9]], dtype=np.int64)})
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[4.5], [0.0], [13.5]])
    with pytest.raises(Exception, match="out of"):
        session.run(None, {"INDEX": np.array([[3], [100]], dtype=np.int64)})
    # The session stays usable after the failed run.
    np.testing.assert_array_equal(session.run(None, {"INDEX": np.array([[3]], dtype=np.int64)})[0], [[4.5]])


def test_slow_adds_one_and_takes_time_independent_of_batch(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    mf.slow(path, 20)
    session = _session(path)
    timings = []
    for batch in (1, 16):
        data = np.arange(batch * 4, dtype=np.float32).reshape(batch, 4)
        session.run(None, {"INPUT0": data})  # warm-up
        start = time.perf_counter()
        (out,) = session.run(None, {"INPUT0": data})
        timings.append(time.perf_counter() - start)
        np.testing.assert_array_equal(out, data + 1)
    # Loose bounds: the duration is approximate and CPUs differ; this only catches a folded-away chain.
    assert all(0.002 < t < 1.0 for t in timings), timings


def test_corrupt_fails_to_load(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    mf.corrupt(path)
    with pytest.raises(Exception):  # noqa: B017 - ORT raises its own, version-dependent exception types
        _session(path)


def test_write_model_layout(tmp_path: Path) -> None:
    config = "max_batch_size: 8\n"
    model_dir = mf.write_model(tmp_path, "m", mf.fixed_shape, version=3, config=config)
    assert model_dir == tmp_path / "m"
    assert (model_dir / "3" / "model.onnx").is_file()
    assert (model_dir / "config.yaml").read_text() == config
    plain = mf.write_model(tmp_path, "plain", lambda p: mf.identity(p, TensorProto.FLOAT))
    assert (plain / "1" / "model.onnx").is_file()
    assert not (plain / "config.yaml").exists()
