"""Every class of bad request gets a V2 error with the right status, and the server keeps answering."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from httputil import post_json, request
from serverctl import RunningServer
from tritonclient.utils import InferenceServerException

GOOD = {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}


def _infer(server: RunningServer, model: str, document: object) -> tuple[int, object]:
    return post_json(server.http_url, f"/v2/models/{model}/infer", document)


def _assert_still_serving(server: RunningServer) -> None:
    status, body = _infer(server, "identity_fp32", {"inputs": [GOOD]})
    assert status == 200, body
    assert body["outputs"][0]["data"] == [1, 2, 3, 4]  # type: ignore[index]


@pytest.mark.parametrize(
    ("model", "document", "status", "message"),
    [
        ("identity_fp32", {"inputs": [{**GOOD, "name": "NOPE"}]}, 400, "unexpected inference input 'NOPE'"),
        (
            "simple",
            {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16}]},
            400,
            "lacks",
        ),
        ("identity_fp32", {"inputs": [{**GOOD, "datatype": "INT32"}]}, 400, "expects datatype FP32"),
        ("identity_fp32", {"inputs": [{**GOOD, "shape": [1, 5], "data": [1] * 5}]}, 400, "expects shape"),
        ("identity_fp32", {"inputs": [{**GOOD, "shape": [4]}]}, 400, "expects shape"),
        ("identity_fp32", {"inputs": [{**GOOD, "data": [1, 2, 3]}]}, 400, "needs 4 elements"),
        ("identity_fp32", {"inputs": [{**GOOD, "data": ["a", "b", "c", "d"]}]}, 400, "must be numbers"),
        (
            "simple",
            {
                "inputs": [
                    {"name": n, "datatype": "INT32", "shape": [9, 16], "data": [0] * 144}
                    for n in ("INPUT0", "INPUT1")
                ]
            },
            400,
            "exceeds the max_batch_size 8",
        ),
        (
            "identity_fp32",
            {"inputs": [GOOD], "outputs": [{"name": "NOPE"}]},
            400,
            "unexpected inference output 'NOPE'",
        ),
        ("identity_fp32", {"inputs": [GOOD, GOOD]}, 400, "more than once"),
        ("identity_fp32", {"nothing": 1}, 400, "'inputs'"),
        ("no_such_model", {"inputs": [GOOD]}, 404, "Request for unknown model: 'no_such_model' is not found"),
    ],
)
def test_bad_json_requests(
    server: RunningServer, model: str, document: object, status: int, message: str
) -> None:
    got_status, body = _infer(server, model, document)
    assert got_status == status
    assert set(body) == {"error"} and message in body["error"]  # type: ignore[arg-type, operator]
    _assert_still_serving(server)


def test_malformed_json(server: RunningServer) -> None:
    status, headers, body = request(server.http_url, "POST", "/v2/models/identity_fp32/infer", b"{inputs: [")
    assert status == 400 and headers["content-type"] == "application/json"
    assert "malformed JSON" in json.loads(body)["error"]
    _assert_still_serving(server)


def test_unknown_version_is_404(server: RunningServer) -> None:
    status, body = post_json(server.http_url, "/v2/models/identity_fp32/versions/9/infer", {"inputs": [GOOD]})
    assert (
        status == 404 and "Request for unknown model: 'identity_fp32' version 9 is not found" in body["error"]
    )


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/no_such_model", 404),
        ("/v2/models/no_such_model/config", 404),
        ("/v3", 404),
        ("/v2/models/simple/versions/7", 404),
        ("/v2/models/no_such_model/stats", 404),
    ],
)
def test_unknown_paths_and_models(server: RunningServer, path: str, status: int) -> None:
    got, headers, body = request(server.http_url, "GET", path)
    assert got == status and "error" in json.loads(body)


@pytest.mark.parametrize(
    ("binary", "claimed_size", "message"),
    [
        (b"\x00" * 8, 16, "runs past the end"),
        (b"\x00" * 24, 16, "add up to 16"),
        (b"\x00" * 8, 8, "needs 16 bytes"),
    ],
)
def test_bad_binary_sections(server: RunningServer, binary: bytes, claimed_size: int, message: str) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": claimed_size},
                }
            ]
        }
    ).encode()
    status, _, body = request(
        server.http_url,
        "POST",
        "/v2/models/identity_fp32/infer",
        header + binary,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 400 and message in json.loads(body)["error"]
    _assert_still_serving(server)


def test_header_length_longer_than_the_body(server: RunningServer) -> None:
    status, _, body = request(
        server.http_url,
        "POST",
        "/v2/models/identity_fp32/infer",
        b"{}",
        {"Inference-Header-Content-Length": "99"},
    )
    assert status == 400 and "Inference-Header-Content-Length" in json.loads(body)["error"]


def test_truncated_bytes_element(server: RunningServer) -> None:
    raw = struct.pack("<I", 50) + b"short"
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "BYTES",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    status, _, body = request(
        server.http_url,
        "POST",
        "/v2/models/identity_bytes/infer",
        header + raw,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 400 and "runs past the end" in json.loads(body)["error"]


def test_execution_failure_is_a_500_and_the_model_keeps_serving(server: RunningServer) -> None:
    bad = {"inputs": [{"name": "INDEX", "datatype": "INT64", "shape": [1, 1], "data": [100]}]}
    status, body = _infer(server, "gather", bad)
    assert status == 500 and "failed to execute" in body["error"]  # type: ignore[index]
    assert "Traceback" not in body["error"]  # type: ignore[index]
    good = {"inputs": [{"name": "INDEX", "datatype": "INT64", "shape": [1, 1], "data": [3]}]}
    status, body = _infer(server, "gather", good)
    assert status == 200 and body["outputs"][0]["data"] == [4.5]  # type: ignore[index]


def test_wrong_method_is_rejected(server: RunningServer) -> None:
    status, _, body = request(server.http_url, "GET", "/v2/models/simple/infer")
    assert status == 405 and "error" in json.loads(body)


def test_grpc_errors_use_matching_status_codes(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException) as not_found:
        client.infer("no_such_model", [tensor])
    assert not_found.value.status() == "StatusCode.NOT_FOUND"
    wrong = grpcclient.InferInput("INPUT0", [1, 4], "INT32")
    wrong.set_data_from_numpy(np.ones((1, 4), np.int32))
    with pytest.raises(InferenceServerException) as invalid:
        client.infer("identity_fp32", [wrong])
    assert invalid.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "expects datatype FP32" in invalid.value.message()
    index = grpcclient.InferInput("INDEX", [1, 1], "INT64")
    index.set_data_from_numpy(np.array([[100]], np.int64))
    with pytest.raises(InferenceServerException) as failed:
        client.infer("gather", [index])
    assert failed.value.status() == "StatusCode.INTERNAL"
    np.testing.assert_array_equal(
        client.infer("identity_fp32", [tensor]).as_numpy("OUTPUT0"), np.ones((1, 4))
    )


def test_grpc_typed_contents_are_accepted(server: RunningServer) -> None:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        message = service_pb2.ModelInferRequest(model_name="simple")
        for name in ("INPUT0", "INPUT1"):
            tensor = message.inputs.add(name=name, datatype="INT32", shape=[1, 16])
            tensor.contents.int_contents.extend(range(16))
        response = stub.ModelInfer(message)
        assert np.frombuffer(response.raw_output_contents[0], np.int32).tolist() == [2 * i for i in range(16)]
        bad = service_pb2.ModelInferRequest(model_name="simple")
        for name in ("INPUT0", "INPUT1"):
            bad.inputs.add(name=name, datatype="INT32", shape=[1, 16]).contents.int_contents.extend(range(3))
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(bad)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
