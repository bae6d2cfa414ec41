"""Small ONNX models written on the fly for the tests (no files checked in, nothing downloaded)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# IR 8 is the first to allow opset 17; onnx would otherwise stamp its newest IR version, which older
# onnxruntime releases refuse to load.
IR_VERSION = 8

# Side of the square constant matrices the slow model multiplies, and how many milliseconds one such
# MatMul took on one onnxruntime thread when this was tuned (x86-64, AVX2). Only a rough guide.
_SLOW_SIDE = 256
_SLOW_MS_PER_MATMUL = 0.5

Dims = Sequence[int | str]


def _tensor(name: str, elem_type: int, dims: Dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, list(dims))


def _save(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
) -> None:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(initializers))
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="inferd-tests"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))


def _batched(dims: Dims, batching: bool) -> list[int | str]:
    return ["batch", *dims] if batching else list(dims)


def identity(path: Path, onnx_elem_type: int, batching: bool = True, dims: Dims = (4,)) -> None:
    """``INPUT0`` -> Identity -> ``OUTPUT0`` of any element type; batching adds a leading 'batch' dim."""
    shape = _batched(dims, batching)
    _save(
        path,
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        [_tensor("INPUT0", onnx_elem_type, shape)],
        [_tensor("OUTPUT0", onnx_elem_type, shape)],
    )


def add_sub(path: Path, elem_type: int = TensorProto.INT32, batching: bool = True) -> None:
    """Triton's "simple" model: ``OUTPUT0 = INPUT0 + INPUT1``, ``OUTPUT1 = INPUT0 - INPUT1`` ([batch, 16])."""
    shape = _batched([16], batching)
    _save(
        path,
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        [_tensor("INPUT0", elem_type, shape), _tensor("INPUT1", elem_type, shape)],
        [_tensor("OUTPUT0", elem_type, shape), _tensor("OUTPUT1", elem_type, shape)],
    )


def fixed_shape(path: Path) -> None:
    """No batch dimension: ``INPUT0`` FP32 [3, 4] -> ``OUTPUT0 = INPUT0 * 2``."""
    _save(
        path,
        [helper.make_node("Mul", ["INPUT0", "two"], ["OUTPUT0"])],
        [_tensor("INPUT0", TensorProto.FLOAT, [3, 4])],
        [_tensor("OUTPUT0", TensorProto.FLOAT, [3, 4])],
        [numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")],
    )


def dynamic_dims(path: Path) -> None:
    """``INPUT0`` FP32 [batch, n] -> ``OUTPUT0`` row sums [batch, 1] and ``OUTPUT1 = INPUT0 * 3``.

    The second dim varies per request, so requests with different ``n`` must never be merged.
    """
    _save(
        path,
        [
            helper.make_node("ReduceSum", ["INPUT0", "axes"], ["OUTPUT0"], keepdims=1),
            helper.make_node("Mul", ["INPUT0", "three"], ["OUTPUT1"]),
        ],
        [_tensor("INPUT0", TensorProto.FLOAT, ["batch", "n"])],
        [
            _tensor("OUTPUT0", TensorProto.FLOAT, ["batch", 1]),
            _tensor("OUTPUT1", TensorProto.FLOAT, ["batch", "n"]),
        ],
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three"),
        ],
    )


def gather(path: Path) -> None:
    """``INDEX`` INT64 [batch, 1] -> ``OUTPUT0`` = table[INDEX] with table = 1.5 * [0..9], FP32 [batch, 1].

    onnxruntime checks the indices when it runs, so an index outside [-10, 10) (e.g. 100) loads fine and
    fails only that execution: the way to test that one failing request does not fail its batch-mates.
    """
    table = np.arange(10, dtype=np.float32) * 1.5
    _save(
        path,
        # Indices [batch, 1] into a 1-D table give [batch, 1] directly.
        [helper.make_node("Gather", ["table", "INDEX"], ["OUTPUT0"], axis=0)],
        [_tensor("INDEX", TensorProto.INT64, ["batch", 1])],
        [_tensor("OUTPUT0", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(table, "table")],
    )


def slow(path: Path, ms: int, plus: float = 1.0) -> None:
    """``INPUT0`` FP32 [batch, 4] -> ``OUTPUT0 = INPUT0 + plus``, taking roughly ``ms`` ms per execution.

    The time goes into a chain of 256x256 MatMuls on constants, so it does not grow with the batch size.
    The chain starts from the input's shape (times 0) so onnxruntime cannot constant-fold it at load, and
    its result, times 0, is added to the output so it is not pruned as dead code. The time is approximate:
    it was tuned on one x86-64 core with one intra-op thread and scales with the CPU and the thread count.
    """
    count = max(1, round(ms / _SLOW_MS_PER_MATMUL))
    side = _SLOW_SIDE
    # Each row of `mix` averages its input row, so the chain's values stay finite (0 * inf would be NaN).
    mix = np.full((side, side), 1.0 / side, dtype=np.float32)
    start = np.ones((side, side), dtype=np.float32)
    nodes = [
        helper.make_node("Shape", ["INPUT0"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["shape_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["shape_f"], ["shape_sum"], keepdims=0),
        helper.make_node("Mul", ["shape_sum", "zero"], ["shape_zero"]),
        helper.make_node("Add", ["start", "shape_zero"], ["chain0"]),
    ]
    for i in range(count):
        nodes.append(helper.make_node("MatMul", [f"chain{i}", "mix"], [f"chain{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"chain{count}"], ["chain_sum"], keepdims=0),
        helper.make_node("Mul", ["chain_sum", "zero"], ["chain_zero"]),
        helper.make_node("Add", ["INPUT0", "one"], ["plus_one"]),
        helper.make_node("Add", ["plus_one", "chain_zero"], ["OUTPUT0"]),
    ]
    _save(
        path,
        nodes,
        [_tensor("INPUT0", TensorProto.FLOAT, ["batch", 4])],
        [_tensor("OUTPUT0", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(mix, "mix"),
            numpy_helper.from_array(start, "start"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array(plus, dtype=np.float32), "one"),
        ],
    )


def corrupt(path: Path) -> None:
    """Write bytes no ONNX parser accepts (0xff is a protobuf tag with the invalid wire type 7)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xff\xff\xff this is not an ONNX model")


def write_model(
    repo: Path,
    name: str,
    builder: Callable[[Path], None],
    version: int = 1,
    config: str | None = None,
) -> Path:
    """Write ``repo/name/<version>/model.onnx`` and optionally ``repo/name/config.yaml``; return repo/name."""
    model_dir = repo / name
    builder(model_dir / str(version) / "model.onnx")
    if config is not None:
        (model_dir / "config.yaml").write_text(config)
    return model_dir


def add_constant(path: Path, value: float) -> None:
    """``INPUT0`` FP32 [batch, 4] -> ``OUTPUT0 = INPUT0 + value``: versions that differ only in ``value``."""
    _save(
        path,
        [helper.make_node("Add", ["INPUT0", "value"], ["OUTPUT0"])],
        [_tensor("INPUT0", TensorProto.FLOAT, ["batch", 4])],
        [_tensor("OUTPUT0", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(value, dtype=np.float32), "value")],
    )


def fails_below_batch_3(path: Path) -> None:
    """Same signature as ``add_constant`` but any execution of 1 or 2 rows fails in onnxruntime.

    A batch of 1 or 2 rows has 4 or 8 elements, which cannot be reshaped to [-1, 3]; the graph loads
    fine because the batch dim is symbolic. The way to get a model that loads but fails its warm-up.
    """
    _save(
        path,
        [
            helper.make_node("Reshape", ["INPUT0", "by3"], ["threes"]),
            helper.make_node("Reshape", ["threes", "by4"], ["OUTPUT0"]),
        ],
        [_tensor("INPUT0", TensorProto.FLOAT, ["batch", 4])],
        [_tensor("OUTPUT0", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(np.array([-1, 3], dtype=np.int64), "by3"),
            numpy_helper.from_array(np.array([-1, 4], dtype=np.int64), "by4"),
        ],
    )


def gather_table(path: Path, size: int) -> None:
    """Like ``gather`` but with a table of ``size`` entries: an index >= size fails at run time."""
    table = np.arange(size, dtype=np.float32) * 1.5
    _save(
        path,
        [helper.make_node("Gather", ["table", "INDEX"], ["OUTPUT0"], axis=0)],
        [_tensor("INDEX", TensorProto.INT64, ["batch", 1])],
        [_tensor("OUTPUT0", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(table, "table")],
    )


def stalls_on_demand(path: Path) -> None:
    """``INPUT0`` FP32 [batch, 4] -> ``OUTPUT0 = INPUT0 + 1``, running ``max(INPUT0)`` 256x256 MatMuls.

    A model that hangs on demand with no test hook: small inputs answer at once, an input holding
    20000 keeps its execution busy for seconds (0.15-0.5 ms per MatMul on one core, by machine), so an
    execution timeout can be hit on purpose. The MatMuls run in an ONNX Loop whose trip count is the
    input's maximum; their result, times 0, is added to the output so nothing is pruned.
    """
    side = _SLOW_SIDE
    mix = np.full((side, side), 1.0 / side, dtype=np.float32)
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["chain_in", "mix"], ["chain_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "stall_body",
        [
            _tensor("i", TensorProto.INT64, []),
            _tensor("cond_in", TensorProto.BOOL, []),
            _tensor("chain_in", TensorProto.FLOAT, [side, side]),
        ],
        [_tensor("cond_out", TensorProto.BOOL, []), _tensor("chain_out", TensorProto.FLOAT, [side, side])],
    )
    nodes = [
        helper.make_node("ReduceMax", ["INPUT0"], ["peak"], keepdims=0),
        helper.make_node("Max", ["peak", "zero"], ["trips_f"]),
        helper.make_node("Cast", ["trips_f"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "", "start"], ["chain"], body=body),
        helper.make_node("ReduceSum", ["chain"], ["chain_sum"], keepdims=0),
        helper.make_node("Mul", ["chain_sum", "zero"], ["chain_zero"]),
        helper.make_node("Add", ["INPUT0", "one"], ["plus_one"]),
        helper.make_node("Add", ["plus_one", "chain_zero"], ["OUTPUT0"]),
    ]
    _save(
        path,
        nodes,
        [_tensor("INPUT0", TensorProto.FLOAT, ["batch", 4])],
        [_tensor("OUTPUT0", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(mix, "mix"),
            numpy_helper.from_array(np.ones((side, side), dtype=np.float32), "start"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        ],
    )


def matmul_mlp(path: Path, seed: int = 0, noise: float = 0.0, width: int = 64) -> None:
    """``input`` FP32 [batch, 32] -> MatMul+Add+Relu x2 -> ``logits`` [batch, 10], He-scaled random
    weights (MatMul, so ORT's dynamic quantizer has work to do). ``noise`` adds that much Gaussian noise
    to every weight, relative to its scale: a perturbed copy an accuracy gate must tell apart."""
    rng = np.random.default_rng(seed)
    noisy = np.random.default_rng(seed + 1000)
    layers = (32, width, width, 10)
    nodes: list[onnx.NodeProto] = []
    initializers = []
    current = "input"
    for i, (fan_in, fan_out) in enumerate(zip(layers, layers[1:], strict=False)):
        scale = np.sqrt(2.0 / fan_in)
        weight = rng.standard_normal((fan_in, fan_out)) * scale
        weight += noisy.standard_normal(weight.shape) * scale * noise
        initializers += [
            numpy_helper.from_array(weight.astype(np.float32), f"W{i}"),
            numpy_helper.from_array(np.zeros(fan_out, dtype=np.float32), f"B{i}"),
        ]
        last = i == len(layers) - 2
        out = "logits" if last else f"add{i}"
        nodes += [
            helper.make_node("MatMul", [current, f"W{i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"mm{i}", f"B{i}"], [out]),
        ]
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"]))
            current = f"relu{i}"
    _save(
        path,
        nodes,
        [_tensor("input", TensorProto.FLOAT, ["batch", layers[0]])],
        [_tensor("logits", TensorProto.FLOAT, ["batch", layers[-1]])],
        initializers,
    )
