"""The PyTorch runtime in-process: TorchScript and torch.export signatures, outputs equal to torch's own,
positional naming, clear load errors, user-code errors and per-thread intra-op threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from inferd.errors import ExecutionError, ModelLoadError
from inferd.model_config import ModelConfig, PyTorchOptions, TensorOverride
from inferd.runtimes.base import RuntimeSettings
from inferd.runtimes.pytorch import PyTorchRuntime
from inferd.runtimes.registry import create_runtime, platform_of, resolve
from inferd.types import TensorSpec

torch = pytest.importorskip("torch")  # the pytorch extra; scripts/setup --test installs it
import torchmodels as tm  # noqa: E402  (imports torch)

F = "FP32"


def _settings(
    max_batch_size: int | None, inputs: list[tuple[str, list[int]]], outputs: list[tuple[str, list[int]]]
) -> RuntimeSettings:
    def overrides(pairs: list[tuple[str, list[int]]]) -> tuple[TensorOverride, ...]:
        return tuple(TensorOverride(name=n, datatype=F, dims=tuple(d)) for n, d in pairs)

    return RuntimeSettings(1, max_batch_size, overrides(inputs), overrides(outputs))


def test_torchscript_mlp_answers_as_torch_does(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.pt"
    module = tm.save_script(tm.MLP(), path)
    runtime = PyTorchRuntime(path, _settings(8, [("INPUT__0", [4])], [("OUTPUT__0", [3])]))
    assert runtime.signature.inputs == (TensorSpec("INPUT__0", F, (4,)),)
    assert runtime.signature.max_batch_size == 8
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    x.flags.writeable = False  # requests arrive as read-only views
    out = runtime.run(0, {"INPUT__0": x})["OUTPUT__0"]
    with torch.no_grad():
        expected = module(torch.from_numpy(x.copy())).numpy()
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(out, expected, atol=1e-6, rtol=0)


def test_torchscript_inputs_go_in_by_index_or_argument_name(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.pt"
    tm.save_script(tm.TwoInputs(), path)
    a = np.ones((2, 4), np.float32)
    b = np.full((2, 4), 3, np.float32)
    # Triton's NAME__<index>: listed out of order, taken by index.
    by_index = PyTorchRuntime(
        path, _settings(4, [("INPUT__1", [4]), ("INPUT__0", [4])], [("OUTPUT__1", [1]), ("OUTPUT__0", [4])])
    )
    assert [s.name for s in by_index.signature.inputs] == ["INPUT__0", "INPUT__1"]
    out = by_index.run(0, {"INPUT__0": a, "INPUT__1": b * 0 - 1})
    assert out["OUTPUT__0"].tolist() == [[0.0] * 4] * 2 and out["OUTPUT__1"].tolist() == [[-4.0]] * 2
    # forward's own argument names, in any order in config.yaml.
    by_name = PyTorchRuntime(path, _settings(4, [("b", [4]), ("a", [4])], [("sum", [4]), ("dot", [1])]))
    out = by_name.run(0, {"a": a, "b": b})
    assert out["sum"].tolist() == [[4.0] * 4] * 2 and out["dot"].tolist() == [[12.0]] * 2


def test_torchscript_dict_outputs_are_taken_by_key(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.pt"
    tm.save_script(tm.Named(), path)
    runtime = PyTorchRuntime(path, _settings(4, [("x", [2])], [("negated", [2]), ("double", [2])]))
    out = runtime.run(0, {"x": np.array([[1, 2]], np.float32)})
    assert out["double"].tolist() == [[2.0, 4.0]] and out["negated"].tolist() == [[-1.0, -2.0]]
    wrong = PyTorchRuntime(path, _settings(4, [("x", [2])], [("double", [2]), ("other", [2])]))
    with pytest.raises(ExecutionError, match=r"forward returned \['double', 'negated'\]; expected"):
        wrong.run(0, {"x": np.ones((1, 2), np.float32)})


def test_torchscript_load_errors_say_what_config_yaml_must_declare(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.pt"
    tm.save_script(tm.TwoInputs(), path)
    with pytest.raises(ModelLoadError, match="a TorchScript model declares its inputs in config.yaml"):
        PyTorchRuntime(path, RuntimeSettings())
    with pytest.raises(ModelLoadError, match=r"declares 1 inputs; forward takes 2 \(a, b\)"):
        PyTorchRuntime(path, _settings(4, [("a", [4])], [("s", [4]), ("d", [1])]))
    with pytest.raises(
        ModelLoadError,
        match=r"forward returns 2 tensors \(Tuple\[Tensor, Tensor\]\); config.yaml declares 3 outputs",
    ):
        PyTorchRuntime(path, _settings(4, [("a", [4]), ("b", [4])], [("s", [4]), ("d", [1]), ("e", [1])]))
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="torch.jit.load cannot load it"):
        PyTorchRuntime(tmp_path / "bad.pt", _settings(4, [("a", [4])], [("s", [4])]))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "m" / "1" / "model.pt2"
    tm.save_exported(tm.TwoInputs(), (torch.ones(3, 4), torch.ones(3, 4)), path)
    return path


def test_an_exported_program_carries_its_signature(exported: Path) -> None:
    runtime = PyTorchRuntime(exported)
    signature = runtime.signature
    assert signature.inputs == (TensorSpec("a", F, (4,)), TensorSpec("b", F, (4,)))
    assert signature.outputs == (TensorSpec("OUTPUT__0", F, (4,)), TensorSpec("OUTPUT__1", F, (1,)))
    assert signature.max_batch_size == 64
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((7, 4)).astype(np.float32) for _ in range(2))
    out = runtime.run(0, {"a": a, "b": b})
    with torch.no_grad():
        total, dot = tm.TwoInputs()(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(out["OUTPUT__0"], total.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["OUTPUT__1"], dot.numpy(), atol=1e-6, rtol=0)
    assert runtime.run(0, {"a": a[:1], "b": b[:1]})["OUTPUT__1"].shape == (1, 1)  # one row works too


def test_config_yaml_renames_an_exported_programs_tensors_in_order(exported: Path) -> None:
    settings = RuntimeSettings(
        1,
        16,
        (TensorOverride(name="left"), TensorOverride(name="right", dims=(4,))),
        (TensorOverride(name="total", datatype=F), TensorOverride(name="dot")),
    )
    runtime = PyTorchRuntime(exported, settings)
    assert [s.name for s in runtime.signature.inputs] == ["left", "right"]
    assert [s.name for s in runtime.signature.outputs] == ["total", "dot"]
    out = runtime.run(0, {"left": np.ones((2, 4), np.float32), "right": np.ones((2, 4), np.float32)})
    assert out["dot"].tolist() == [[4.0], [4.0]]


def test_exported_program_config_mismatches_are_load_errors(exported: Path) -> None:
    three_outputs = RuntimeSettings(outputs=tuple(TensorOverride(name=n) for n in ("x", "y", "z")))
    with pytest.raises(
        ModelLoadError, match=r"declares 3 outputs; the program has 2 \(OUTPUT__0, OUTPUT__1\)"
    ):
        PyTorchRuntime(exported, three_outputs)
    wrong_type = RuntimeSettings(
        inputs=(TensorOverride(name="a", datatype="INT64"), TensorOverride(name="b"))
    )
    with pytest.raises(ModelLoadError, match="input 'a' is INT64; the program's input in that position"):
        PyTorchRuntime(exported, wrong_type)
    with pytest.raises(ModelLoadError, match="exceeds the program's batch range"):
        PyTorchRuntime(exported, RuntimeSettings(max_batch_size=2000))


def test_a_static_exported_program_does_not_batch(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.pt2"
    tm.save_exported(tm.Named(), (torch.ones(1, 2),), path, batch=False)
    runtime = PyTorchRuntime(path)
    assert runtime.signature.max_batch_size == 0
    assert [(s.name, s.dims) for s in runtime.signature.outputs] == [("double", (1, 2)), ("negated", (1, 2))]
    with pytest.raises(ModelLoadError, match="has a dynamic first dimension"):
        PyTorchRuntime(path, RuntimeSettings(max_batch_size=4))


def test_an_exception_in_forward_is_a_short_500_with_an_error_id(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.pt"
    tm.save_script(tm.Fussy(), path)
    runtime = PyTorchRuntime(path, _settings(4, [("x", [4])], [("y", [4])]))
    with pytest.raises(ExecutionError) as caught:
        runtime.run(0, {"x": -np.ones((1, 4), np.float32)})
    message = caught.value.message
    assert message.startswith("model m/1: forward raised ") and "negative input" in message
    assert "Traceback" not in message and "\n" not in message
    assert caught.value.error_id and f"(error id {caught.value.error_id})" in message
    assert runtime.run(0, {"x": np.ones((1, 4), np.float32)})["y"].tolist() == [[1.0] * 4]


def test_intra_op_threads_are_set_per_executing_thread(tmp_path: Path) -> None:
    path = tmp_path / "m" / "1" / "model.pt"
    tm.save_script(tm.MLP(), path)
    settings = _settings(8, [("x", [4])], [("y", [3])])
    runtimes = [PyTorchRuntime(path, settings, PyTorchOptions(intra_op_threads=n)) for n in (1, 2)]
    seen: dict[int, int] = {}
    barrier = threading.Barrier(2)

    def serve(runtime: PyTorchRuntime, threads: int) -> None:
        for _ in range(3):
            runtime.run(0, {"x": np.ones((4, 4), np.float32)})
            barrier.wait(timeout=30)  # the other model ran in between
        seen[threads] = torch.get_num_threads()

    workers = [threading.Thread(target=serve, args=(r, n)) for r, n in zip(runtimes, (1, 2), strict=True)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert seen == {1: 1, 2: 2}


def test_the_registry_serves_model_pt_and_model_pt2(tmp_path: Path, exported: Path) -> None:
    version = tmp_path / "m" / "1"
    tm.save_script(tm.MLP(), version / "model.pt")
    assert resolve(version, ModelConfig()).name == "pytorch"
    assert resolve(exported.parent, ModelConfig()).name == "pytorch"
    assert resolve(tmp_path, ModelConfig(backend="pytorch")).name == "pytorch"
    assert resolve(tmp_path, ModelConfig(platform="pytorch_libtorch")).name == "pytorch"
    runtime = create_runtime(exported, ModelConfig(pytorch=PyTorchOptions(intra_op_threads=1)))
    assert platform_of(runtime).triton_platform == "pytorch_libtorch"
    assert platform_of(runtime).backend == "pytorch"
    with pytest.raises(
        ModelLoadError, match=r"model.pt: file not found \(platform pytorch loads model.pt or model.pt2\)"
    ):
        create_runtime(tmp_path / "x" / "1" / "model.onnx", ModelConfig(platform="pytorch"))
