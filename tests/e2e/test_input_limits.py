"""config.yaml and server limits on request values: sizes, NaN/Inf, per-input ranges; each a clear 400."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from httputil import post_json, request
from onnx import TensorProto
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

GUARDED = """max_batch_size: 8
limits:
  max_elements: 8
  allow_nan: false
inputs:
  - name: INPUT0
    min: -1
    max: 1
"""


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("limits-models")
    mf.write_model(root, "guarded", lambda p: mf.identity(p, TensorProto.FLOAT), config=GUARDED)
    mf.write_model(root, "open", lambda p: mf.identity(p, TensorProto.FLOAT))
    mf.write_model(
        root,
        "short_text",
        lambda p: mf.identity(p, TensorProto.STRING),
        config="limits:\n  max_bytes_length: 3\n",
    )
    running = start_server(root, tmp_path_factory.mktemp("limits-server"), "--max-tensor-elements", "12")
    yield running
    assert running.stop() == 0, running.log()


def _fp32(server: RunningServer, model: str, rows: list[list[float]]) -> tuple[int, dict[str, str]]:
    document = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [len(rows), 4], "data": rows}]}
    return post_json(server.http_url, f"/v2/models/{model}/infer", document)  # type: ignore[return-value]


def test_values_inside_the_range_pass(limits_server: RunningServer) -> None:
    status, body = _fp32(limits_server, "guarded", [[-1, 0, 0.5, 1], [0, 0, 0, 0]])
    assert status == 200, body


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[0, 0, 0, 1.5]], "above its maximum 1"),
        ([[-2, 0, 0, 0]], "below its minimum -1"),
        ([[0, 0, 0, 0]] * 3, "more than the limit of 8"),
    ],
)
def test_out_of_range_and_oversized_inputs_are_400(
    limits_server: RunningServer, rows: list[list[float]], message: str
) -> None:
    status, body = _fp32(limits_server, "guarded", rows)
    assert status == 400 and message in body["error"]


def test_nan_and_infinity_are_refused_where_the_model_says_so(limits_server: RunningServer) -> None:
    # JSON cannot carry NaN; the binary form can.
    for value in (np.nan, np.inf, -np.inf):
        raw = np.array([[0, value, 0, 0]], np.float32).tobytes()
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": "INPUT0",
                        "datatype": "FP32",
                        "shape": [1, 4],
                        "parameters": {"binary_data_size": 16},
                    }
                ]
            }
        ).encode()
        headers = {"Inference-Header-Content-Length": str(len(head))}
        status, _, body = request(
            limits_server.http_url, "POST", "/v2/models/guarded/infer", head + raw, headers
        )
        assert status == 400 and b"NaN or infinity" in body
        status, _, _ = request(limits_server.http_url, "POST", "/v2/models/open/infer", head + raw, headers)
        assert status == 200  # the default allows them, as Triton does

    client = grpcclient.InferenceServerClient(limits_server.grpc_url)
    tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.array([[0, np.nan, 0, 0]], np.float32))
    with pytest.raises(InferenceServerException) as failure:
        client.infer("guarded", [tensor])
    assert failure.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_the_server_wide_element_limit_applies_to_models_without_their_own(
    limits_server: RunningServer,
) -> None:
    status, body = _fp32(limits_server, "open", [[0, 0, 0, 0]] * 3)
    assert status == 200, body
    status, body = _fp32(limits_server, "open", [[0, 0, 0, 0]] * 4)
    assert status == 400 and "more than the limit of 12" in body["error"]


def test_bytes_elements_longer_than_the_limit_are_400(limits_server: RunningServer) -> None:
    document = {
        "inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 4], "data": ["a", "bb", "ccc", "dd"]}]
    }
    status, body = post_json(limits_server.http_url, "/v2/models/short_text/infer", document)
    assert status == 200, body
    document["inputs"][0]["data"] = ["a", "bb", "cccc", "dd"]  # type: ignore[index]
    status, body = post_json(limits_server.http_url, "/v2/models/short_text/infer", document)
    assert status == 400 and "BYTES element of 4 bytes" in body["error"]


def test_a_range_with_min_above_max_fails_the_load(tmp_path: Path) -> None:
    from serverctl import run_server_expecting_exit

    mf.write_model(
        tmp_path,
        "bad",
        lambda p: mf.identity(p, TensorProto.FLOAT),
        config="inputs:\n  - name: INPUT0\n    min: 2\n    max: 1\n",
    )
    result = run_server_expecting_exit(tmp_path)
    assert result.returncode != 0 and "min 2.0 is greater than max 1.0" in result.stderr
