"""Start-up: bad repositories stop the server with a clear message unless asked to start anyway."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
from httputil import post_json, request
from onnx import TensorProto
from serverctl import run_server_expecting_exit, start_server


def _good(root: Path) -> None:
    mf.write_model(root, "good", lambda p: mf.identity(p, TensorProto.FLOAT))


def test_corrupt_model_stops_the_server_naming_the_file(tmp_path: Path) -> None:
    _good(tmp_path)
    mf.write_model(tmp_path, "broken", mf.corrupt)
    result = run_server_expecting_exit(tmp_path)
    assert result.returncode != 0
    assert str(tmp_path / "broken" / "1" / "model.onnx") in result.stderr


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ("max_batch_size: 4\nbogus_key: 1\n", "'bogus_key': unknown key"),
        ("max_batch_size: -3\n", "'max_batch_size'"),
        ("dynamic_batching:\n  max_queue_delay: 2\n", "'dynamic_batching.max_queue_delay': unknown key"),
        ("instances: many\n", "'instances'"),
        ("max_batch_size: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_file_and_the_key(tmp_path: Path, config: str, named: str) -> None:
    mf.write_model(tmp_path, "m", lambda p: mf.identity(p, TensorProto.FLOAT), config=config)
    result = run_server_expecting_exit(tmp_path)
    assert result.returncode != 0
    assert str(tmp_path / "m" / "config.yaml") in result.stderr and named in result.stderr


def test_missing_repository_is_an_error(tmp_path: Path) -> None:
    result = run_server_expecting_exit(tmp_path / "nowhere")
    assert result.returncode != 0 and "nowhere" in result.stderr


def test_no_exit_on_error_starts_with_the_broken_model_not_ready(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    _good(repository)
    mf.write_model(repository, "broken", mf.corrupt)
    server = start_server(repository, tmp_path, "--no-exit-on-error")
    try:
        assert request(server.http_url, "GET", "/v2/health/ready")[0] == 503
        assert request(server.http_url, "GET", "/v2/models/broken/ready")[0] == 503
        assert request(server.http_url, "GET", "/v2/models/good/ready")[0] == 200
        status, body = post_json(server.http_url, "/v2/models/broken/infer", {"inputs": []})
        assert status == 503 and "not ready" in body["error"]
        status, index = post_json(server.http_url, "/v2/repository/index", {})
        broken = next(entry for entry in index if entry["name"] == "broken")
        assert broken["state"] == "UNAVAILABLE" and "model.onnx" in broken["reason"]
        good = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        assert post_json(server.http_url, "/v2/models/good/infer", good)[0] == 200
    finally:
        assert server.stop() == 0


def test_body_over_the_size_limit_is_413(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    _good(repository)
    server = start_server(repository, tmp_path, "--max-body-bytes", "2048")
    try:
        big = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1000, 4], "data": [0.5] * 4000}]}
        status, body = post_json(server.http_url, "/v2/models/good/infer", big)
        assert status == 413 and "exceeds the limit of 2048 bytes" in body["error"]
        small = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        assert post_json(server.http_url, "/v2/models/good/infer", small)[0] == 200
    finally:
        assert server.stop() == 0


def test_serve_help_documents_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inferd", "serve", "--help"], capture_output=True, text=True, check=True
    )
    for flag in (
        "--host",
        "--http-port",
        "--grpc-port",
        "--exit-on-error",
        "--max-body-bytes",
        "--port-file",
    ):
        assert flag in result.stdout


def test_model_without_config_is_inferred_from_the_graph(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    _good(repository)
    server = start_server(repository, tmp_path)
    try:
        status, _, body = request(server.http_url, "GET", "/v2/models/good/config")
        config = json.loads(body)
        assert status == 200 and config["max_batch_size"] > 0 and "dynamic_batching" in config
        data = np.arange(8, dtype=np.float32).reshape(2, 4)
        document = {
            "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 4], "data": data.tolist()}]
        }
        status, answer = post_json(server.http_url, "/v2/models/good/infer", document)
        assert status == 200 and answer["outputs"][0]["data"] == data.ravel().tolist()
    finally:
        assert server.stop() == 0
