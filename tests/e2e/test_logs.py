"""Structured logs of a real server: JSON lines, access log on demand, level by flag."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from httputil import request
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

MARKER = 987654  # an input value that must never appear in a log


def _infer(client: httpclient.InferenceServerClient, request_id: str, dtype: str = "INT32") -> None:
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, [1, 16], dtype)
        tensor.set_data_from_numpy(
            np.full((1, 16), MARKER, dtype=np.int32 if dtype == "INT32" else np.float32)
        )
        inputs.append(tensor)
    client.infer("simple", inputs, request_id=request_id)


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_access_log_lines_carry_request_model_status_and_latency(repository: Path, tmp_path: Path) -> None:
    server = start_server(repository, tmp_path, "--access-log")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        _infer(client, "req-ok")
        with pytest.raises(InferenceServerException):
            _infer(client, "req-bad", dtype="FP32")
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        tensors = []
        for name in ("INPUT0", "INPUT1"):
            tensor = grpcclient.InferInput(name, [1, 16], "INT32")
            tensor.set_data_from_numpy(np.full((1, 16), MARKER, dtype=np.int32))
            tensors.append(tensor)
        grpc.infer("simple", tensors, request_id="req-grpc")
    finally:
        assert server.stop() == 0
    log = server.log()
    lines = _lines(log)  # every line is JSON
    access = {line["request_id"]: line for line in lines if line["logger"] == "inferd.access"}
    ok = access["req-ok"]
    assert (ok["model"], ok["version"], ok["status"]) == ("simple", "1", "ok")
    assert isinstance(ok["latency_ms"], float) and ok["latency_ms"] >= 0
    assert access["req-bad"]["status"] == "invalid_argument"
    assert access["req-grpc"]["status"] == "ok"  # the data plane logs both transports
    assert str(MARKER) not in log


def test_access_log_is_off_by_default_and_the_level_filters(repository: Path, tmp_path: Path) -> None:
    server = start_server(repository, tmp_path, "--log-level", "warning", "--no-metrics")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        _infer(client, "quiet")
        for path in ("/metrics", "/dashboard", "/"):
            status, _, _ = request(server.http_url, "GET", path)
            assert status == 404, path
    finally:
        assert server.stop() == 0
    lines = _lines(server.log())
    assert not any(line["logger"] == "inferd.access" for line in lines)
    assert not any(line["level"] == "info" for line in lines)


def test_load_lines_name_only_what_was_measured(server: RunningServer) -> None:
    # The test repository's models have no warm-up: their load lines must not print "None ms". The
    # session's shared server has served other tests' hostile requests too, and native libraries (gRPC's
    # core) may write plain lines to its stderr: only the JSON lines are read here.
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    loaded = [str(line["message"]) for line in records if " warm: " in str(line["message"])]
    assert loaded
    for message in loaded:
        assert "None" not in message, message
        assert re.search(r"warm: load [\d.]+ ms, no warm-up", message), message
