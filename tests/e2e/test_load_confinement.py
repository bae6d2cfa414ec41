"""A load cannot ask for unbounded resources or files outside its model, and cannot hang the model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import modelfactory as mf
import numpy as np
import pytest
from httputil import post_json
from lifecycleutil import wait_until
from onnx import TensorProto
from serverctl import RunningServer, run_server_expecting_exit, start_server

from inferd.model_config import available_cores
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc

LOAD_TIMEOUT_S = 3
INFER = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("confined")
    root = base / "models"
    mf.write_model(root, "m", lambda p: mf.identity(p, TensorProto.FLOAT))
    mf.write_model(root, "slow", lambda p: mf.slow(p, 1000), config="max_batch_size: 1\n")
    model_dir = mf.write_model(root, "w", lambda p: mf.identity(p, TensorProto.FLOAT))
    np.savez(model_dir / "inside.npz", INPUT0=np.ones((1, 4), dtype=np.float32))
    np.savez(base / "outside.npz", INPUT0=np.ones((1, 4), dtype=np.float32))
    (model_dir / "exists.npz").symlink_to(base / "outside.npz")
    (model_dir / "missing.npz").symlink_to(base / "missing.npz")
    return base


@pytest.fixture(scope="module")
def server(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        base / "models",
        tmp_path_factory.mktemp("server"),
        "--model-control",
        "explicit",
        "--load-timeout",
        str(LOAD_TIMEOUT_S),
    )
    yield running
    assert running.stop() == 0, running.log()


def _load(server: RunningServer, name: str, config: str | None = None) -> tuple[int, str]:
    document = {"parameters": {"config": config}} if config is not None else {}
    status, body = post_json(server.http_url, f"/v2/repository/models/{name}/load", document)
    return status, (body or {}).get("error", "")


def test_threads_and_instances_beyond_the_cores_are_a_400(server: RunningServer) -> None:
    cores = available_cores()
    status, error = _load(server, "m", "onnxruntime: {intra_op_threads: 100000}")
    assert status == 400, error
    assert "'onnxruntime.intra_op_threads'" in error and f"limit of {cores}" in error
    status, error = _load(server, "m", '{"onnxruntime": {"inter_op_threads": 100000}}')
    assert status == 400 and "'onnxruntime.inter_op_threads'" in error
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        config = pb.ModelRepositoryParameter(string_param=f"instances: {cores + 1}")
        with pytest.raises(grpc.RpcError) as raised:
            stub.RepositoryModelLoad(
                pb.RepositoryModelLoadRequest(model_name="m", parameters={"config": config}), timeout=30
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'instances'" in (raised.value.details() or "")
    # Nothing was held: the model loads at once with its own configuration.
    assert _load(server, "m") == (200, "")
    assert post_json(server.http_url, "/v2/models/m/infer", INFER)[0] == 200


def test_warm_up_files_outside_the_model_answer_alike(server: RunningServer, base: Path) -> None:
    def warm_up(file: str) -> tuple[int, str]:
        status, error = _load(server, "w", f"warmup:\n  - data: file\n    file: '{file}'\n")
        assert str(base) not in error, error
        return status, error.replace(file, "FILE")

    named = {warm_up(file) for file in ("/etc/passwd", "/nonexistent.npz", "../m/config.yaml")}
    assert len(named) == 1 and next(iter(named))[0] == 400, named
    linked = {warm_up(file) for file in ("exists.npz", "missing.npz")}
    assert len(linked) == 1, linked
    status, error = next(iter(linked))
    assert status == 500 and "w/FILE: warm-up file is not inside the model directory" in error
    assert _load(server, "w", "warmup:\n  - data: file\n    file: inside.npz\n") == (200, "")


def test_a_load_past_the_timeout_fails_and_frees_the_model(server: RunningServer) -> None:
    # 1,000 warm-up runs of a model taking a good part of a second: past the 3 s timeout on any CPU.
    start = time.monotonic()
    status, error = _load(server, "slow", "max_batch_size: 1\nwarmup:\n  - count: 1000\n")
    assert status == 500 and f"load timeout of {LOAD_TIMEOUT_S} s" in error, error
    assert time.monotonic() - start < 30
    # The abandoned warm-up stops at its next run rather than holding a core for minutes.
    stopped = "warm-up stopped at the load deadline"
    wait_until(lambda: stopped in server.log(), 30, "the abandoned warm-up to stop")
    # The lock is free: the same model loads now without the warm-up and serves.
    assert _load(server, "slow") == (200, "")
    status, body = post_json(server.http_url, "/v2/models/slow/infer", INFER)
    assert status == 200, body
    assert json.dumps(body["outputs"][0]["data"]) == "[2.0, 3.0, 4.0, 5.0]"


def test_a_start_up_load_past_the_timeout_stops_the_server_cleanly(tmp_path: Path) -> None:
    config = "max_batch_size: 1\nwarmup:\n  - count: 1000\n"
    mf.write_model(tmp_path, "slow", lambda p: mf.slow(p, 1000), config=config)
    result = run_server_expecting_exit(tmp_path, "--load-timeout", "1")
    # Exit 1 with the reason, not an abort from tearing ONNX Runtime down under the abandoned warm-up.
    assert result.returncode == 1, result.stderr
    assert "load timeout of 1 s" in result.stderr
