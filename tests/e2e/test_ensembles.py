"""Ensembles (platform: ensemble) served for real, with small ONNX and Python step models: a DAG with
two parallel steps, version pinning, a failing step, per-step batching in the statistics, config and
metadata as Triton shows them, bad configurations, a step model that is not ready, and a hot swap of a
step model under load."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import modelfactory as mf
import numpy as np
import pymodels
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from lifecycleutil import index, wait_until
from loadgen import load_across_a_swap
from onnx import TensorProto
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

TIMEOUT_S = 60

# The two parallel steps of the DAG meet at a barrier: each returns only once the other runs too, so a
# pipeline that ran them one after the other would fail (after the barrier's timeout).
BARRIER_STEP = """
import sys
import threading
import numpy as np
from inferd import Model, Tensor

BARRIER = sys.__dict__.setdefault("_inferd_test_barrier", threading.Barrier(2, timeout=20))

class Step(Model):
    inputs = [Tensor("x", "FP32", [-1, 16])]
    outputs = [Tensor("y", "FP32", [-1, 16])]
    max_batch_size = 8

    def predict(self, inputs):
        BARRIER.wait()
        return {"y": inputs["x"] * np.float32(FACTOR)}
"""

SLOW_DOUBLE = """
import time
from inferd import Model, Tensor

class SlowDouble(Model):
    inputs = [Tensor("INPUT0", "FP32", [-1, 4])]
    outputs = [Tensor("OUTPUT0", "FP32", [-1, 4])]
    max_batch_size = 16

    def predict(self, inputs):
        time.sleep(0.02)  # long enough for concurrent requests to queue and be merged
        return {"OUTPUT0": inputs["INPUT0"] * 2}
"""

FAILING = """
from inferd import Model, Tensor

class Failing(Model):
    inputs = [Tensor("INPUT0", "FP32", [-1, 4])]
    outputs = [Tensor("OUTPUT0", "FP32", [-1, 4])]
    max_batch_size = 16

    def predict(self, inputs):
        if (inputs["INPUT0"] < 0).any():
            raise ValueError("negative input")
        return {"OUTPUT0": inputs["INPUT0"]}
"""

BATCHED = "max_batch_size: 16\ndynamic_batching:\n  max_queue_delay_ms: 20\n"


def ensemble(root: Path, name: str, config: str) -> None:
    """An ensemble: config.yaml and an empty version directory, as in Triton."""
    (root / name / "1").mkdir(parents=True)
    (root / name / "config.yaml").write_text(textwrap.dedent(config))


def chain_ensemble(root: Path, name: str, steps: list[tuple[str, int]]) -> None:
    """INPUT0 -> each (model, version) in turn -> OUTPUT0, every step FP32 [4] INPUT0 -> OUTPUT0."""
    lines = []
    for i, (model, version) in enumerate(steps):
        source = "INPUT0" if i == 0 else f"t{i}"
        target = "OUTPUT0" if i == len(steps) - 1 else f"t{i + 1}"
        lines.append(
            f"    - {{model_name: {model}, model_version: {version}, input_map: {{INPUT0: {source}}}, "
            f"output_map: {{OUTPUT0: {target}}}}}"
        )
    ensemble(
        root,
        name,
        "platform: ensemble\nmax_batch_size: 16\n"
        "inputs:\n  - {name: INPUT0, datatype: FP32, dims: [4]}\n"
        "outputs:\n  - {name: OUTPUT0, datatype: FP32, dims: [4]}\n"
        "ensemble_scheduling:\n  step:\n" + "\n".join(lines) + "\n",
    )


DAG = """
platform: ensemble
max_batch_size: 8
inputs:
  - {name: X, datatype: FP32, dims: [16]}
outputs:
  - {name: SUM, datatype: FP32, dims: [16]}
  - {name: DIFF, datatype: FP32, dims: [16]}
ensemble_scheduling:
  step:
    - model_name: addsub
      model_version: -1
      input_map: {INPUT0: L, INPUT1: R}
      output_map: {OUTPUT0: SUM, OUTPUT1: DIFF}
    - {model_name: left, model_version: -1, input_map: {x: X}, output_map: {y: L}}
    - {model_name: right, model_version: -1, input_map: {x: X}, output_map: {y: R}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("ensembles")
    pymodels.write(root, "left", BARRIER_STEP.replace("FACTOR", "2"))
    pymodels.write(root, "right", BARRIER_STEP.replace("FACTOR", "3"))
    mf.write_model(root, "addsub", lambda p: mf.add_sub(p, TensorProto.FLOAT), config="max_batch_size: 8\n")
    pymodels.write(root, "slow", SLOW_DOUBLE, config="dynamic_batching:\n  max_queue_delay_ms: 20\n")
    pymodels.write(root, "failing", FAILING)
    policy = BATCHED + "version_policy: all\n"
    mf.write_model(root, "plus", lambda p: mf.add_constant(p, 1.0), version=1, config=policy)
    mf.write_model(root, "plus", lambda p: mf.add_constant(p, 10.0), version=2)
    ensemble(root, "dag", DAG)
    chain_ensemble(root, "chain", [("slow", -1), ("plus", 1)])
    chain_ensemble(root, "latest", [("plus", -1)])
    chain_ensemble(root, "fails", [("failing", -1), ("slow", -1)])
    running = start_server(root, tmp_path_factory.mktemp("server"))
    yield running
    assert running.stop() == 0, running.log()


def _infer_http(
    server: RunningServer, model: str, data: np.ndarray, name: str = "INPUT0"
) -> dict[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
    tensor = httpclient.InferInput(name, list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer(model, [tensor])
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


def test_dag_runs_parallel_steps_over_http_and_grpc(server: RunningServer) -> None:
    x = np.random.default_rng(0).random((2, 16), dtype=np.float32)
    outputs = _infer_http(server, "dag", x, "X")
    np.testing.assert_allclose(outputs["SUM"], 5 * x, rtol=1e-6)
    np.testing.assert_allclose(outputs["DIFF"], -x, rtol=1e-6)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("X", [2, 16], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("dag", [tensor], outputs=[grpcclient.InferRequestedOutput("DIFF")])
    np.testing.assert_allclose(result.as_numpy("DIFF"), -x, rtol=1e-6)
    assert result.as_numpy("SUM") is None  # only what was asked for


def test_steps_use_pinned_or_default_versions(server: RunningServer) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    np.testing.assert_allclose(_infer_http(server, "chain", x)["OUTPUT0"], 2 * x + 1)  # plus v1
    np.testing.assert_allclose(_infer_http(server, "latest", x)["OUTPUT0"], x + 10)  # plus v2


def test_a_failing_step_fails_only_its_requests_naming_step_and_model(server: RunningServer) -> None:
    good = np.ones((1, 4), dtype=np.float32)
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(_infer_http, server, "fails", good * (-1 if i % 4 == 0 else 1)) for i in range(16)
        ]
        for i, future in enumerate(futures):
            if i % 4 == 0:
                with pytest.raises(InferenceServerException) as caught:
                    future.result()
                message = str(caught.value)
                assert "ensemble 'fails' step 0 (model 'failing')" in message, message
                assert "ValueError: negative input" in message, message
            else:
                np.testing.assert_allclose(future.result()["OUTPUT0"], 2 * good)


def _stats(server: RunningServer, model: str) -> dict[str, int]:
    client = httpclient.InferenceServerClient(server.http_url)
    (stats,) = client.get_inference_statistics(model)["model_stats"]
    return {
        "inferences": stats["inference_count"],
        "executions": stats["execution_count"],
        "success": stats["inference_stats"]["success"]["count"],
    }


def test_concurrent_pipeline_requests_batch_per_step(server: RunningServer) -> None:
    before = {m: _stats(server, m) for m in ("chain", "slow")}
    x = np.ones((1, 4), dtype=np.float32)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: _infer_http(server, "chain", x), range(48)))
    assert all(np.allclose(r["OUTPUT0"], 3.0) for r in results)
    after = {m: _stats(server, m) for m in ("chain", "slow")}
    chain = {k: after["chain"][k] - before["chain"][k] for k in after["chain"]}
    slow = {k: after["slow"][k] - before["slow"][k] for k in after["slow"]}
    # The ensemble counts each request once (its own executions: one per request)...
    assert chain == {"inferences": 48, "executions": 48, "success": 48}
    # ...and its step model's statistics show the steps batched across pipeline requests.
    assert slow["inferences"] == 48
    assert slow["executions"] < 48, slow


def test_config_and_metadata_are_tritons(server: RunningServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    config = http.get_model_config("dag")
    assert config["platform"] == "ensemble" and config["backend"] == ""
    assert config["instance_group"] == []
    steps = config["ensemble_scheduling"]["step"]
    assert steps[1] == {
        "model_name": "left",
        "model_version": -1,
        "input_map": {"x": "X"},
        "output_map": {"y": "L"},
    }
    assert [s["model_name"] for s in steps] == ["addsub", "left", "right"]
    assert "dynamic_batching" not in config
    grpc_config = grpcclient.InferenceServerClient(server.grpc_url).get_model_config("chain").config
    assert grpc_config.platform == "ensemble"
    assert [(s.model_name, s.model_version) for s in grpc_config.ensemble_scheduling.step] == [
        ("slow", -1),
        ("plus", 1),
    ]
    assert dict(grpc_config.ensemble_scheduling.step[0].input_map) == {"INPUT0": "INPUT0"}
    metadata = http.get_model_metadata("dag")
    assert metadata["platform"] == "ensemble"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 16]}]
    # perf_analyzer's needs: each step's config (it recurses) and statistics of every composing model.
    for step in steps:
        assert http.get_model_config(step["model_name"])["name"] == step["model_name"]
    assert http.is_model_ready("dag")


NEGATIVE = {
    "unknown_step": """
        platform: ensemble
        inputs: [{name: INPUT0, datatype: FP32, dims: [4]}]
        outputs: [{name: OUTPUT0, datatype: FP32, dims: [4]}]
        ensemble_scheduling:
          step:
            - {model_name: nope, input_map: {INPUT0: INPUT0}, output_map: {OUTPUT0: OUTPUT0}}
        """,
    "unproduced": """
        platform: ensemble
        inputs: [{name: INPUT0, datatype: FP32, dims: [4]}]
        outputs: [{name: OUTPUT0, datatype: FP32, dims: [4]}]
        ensemble_scheduling:
          step:
            - {model_name: plus, input_map: {INPUT0: ghost}, output_map: {OUTPUT0: OUTPUT0}}
        """,
    "cycle": """
        platform: ensemble
        inputs: [{name: INPUT0, datatype: FP32, dims: [4]}]
        outputs: [{name: OUTPUT0, datatype: FP32, dims: [4]}]
        ensemble_scheduling:
          step:
            - {model_name: plus, input_map: {INPUT0: INPUT0}, output_map: {OUTPUT0: OUTPUT0}}
            - {model_name: plus, input_map: {INPUT0: b}, output_map: {OUTPUT0: a}}
            - {model_name: plus, input_map: {INPUT0: a}, output_map: {OUTPUT0: b}}
        """,
    "batcher": """
        platform: ensemble
        dynamic_batching: {}
        inputs: [{name: INPUT0, datatype: FP32, dims: [4]}]
        outputs: [{name: OUTPUT0, datatype: FP32, dims: [4]}]
        ensemble_scheduling:
          step:
            - {model_name: plus, input_map: {INPUT0: INPUT0}, output_map: {OUTPUT0: OUTPUT0}}
        """,
}


def test_bad_ensembles_fail_to_load_naming_the_problem_and_a_missing_step_is_not_ready(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models"
    mf.write_model(root, "plus", lambda p: mf.add_constant(p, 1.0))
    mf.write_model(root, "broken", mf.corrupt)
    for name, config in NEGATIVE.items():
        ensemble(root, name, config)
    chain_ensemble(root, "uses_broken", [("plus", -1), ("broken", -1)])
    server = start_server(root, tmp_path, "--no-exit-on-error")
    try:
        rows = {r["name"]: r for r in index(server.http_url)}
        for name in NEGATIVE:
            assert rows[name]["state"] != "READY", rows[name]
        assert (
            "ensemble steps use models the repository does not have: 'nope'" in rows["unknown_step"]["reason"]
        )
        assert "step 0 (model 'plus') reads 'ghost'" in rows["unproduced"]["reason"]
        assert "cycle: step 1 (model 'plus') -> step 2 (model 'plus') -> step 1" in rows["cycle"]["reason"]
        assert "no batcher of its own" in rows["batcher"]["reason"]
        # It loads (its configuration is sound) but is not ready while a step model does not serve.
        http = httpclient.InferenceServerClient(server.http_url)
        assert rows["uses_broken"]["state"] == "READY"
        assert not http.is_model_ready("uses_broken")
        assert http.is_model_ready("plus")
        tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        with pytest.raises(InferenceServerException) as caught:
            http.infer("uses_broken", [tensor])
        assert caught.value.status() == "503"
        assert "ensemble 'uses_broken' step 1 (model 'broken')" in str(caught.value)
    finally:
        assert server.stop() == 0, server.log()


def test_hot_swap_of_a_step_model_under_load(tmp_path: Path) -> None:
    root = tmp_path / "models"
    model_dir = pymodels.write(root, "m", pymodels.add_constant(1.0), config="dynamic_batching: {}\n")
    chain_ensemble(root, "e", [("m", -1)])
    server = start_server(root, tmp_path, "--model-control", "poll", "--repository-poll-interval", "0.2")
    try:
        load = load_across_a_swap(
            server.http_url,
            server.grpc_url,
            "e",
            lambda: pymodels.write_version(model_dir, 2, pymodels.add_constant(2.0)),
            TIMEOUT_S,
        )
        assert load.errors() == []
        for record in load.snapshot():
            meanings = [meaning for _, meaning in record.answers]
            first_new = meanings.index(2.0)
            assert set(meanings[:first_new]) == {1.0} and set(meanings[first_new:]) == {2.0}
        wait_until(
            lambda: any(
                r["name"] == "m" and r["version"] == "1" and r["state"] == "UNAVAILABLE"
                for r in index(server.http_url)
            ),
            TIMEOUT_S,
            "version 1 of the step model to be unloaded",
        )
    finally:
        assert server.stop() == 0, server.log()
