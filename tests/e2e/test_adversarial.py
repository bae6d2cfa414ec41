"""Hostile and malformed requests in every encoding: each gets a clear 4xx V2 error, never a 500 or a hang."""

from __future__ import annotations

import json
import struct

import grpc
import numpy as np
import pytest
from httputil import request
from serverctl import RunningServer

from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc

FP32 = {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
HEADER = "Inference-Header-Content-Length"


def _doc(**changes: object) -> bytes:
    return json.dumps({"inputs": [{**FP32, **changes}]}).encode()


def _binary(datatype: str, shape: list[int], declared: int, raw: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": datatype,
                    "shape": shape,
                    "parameters": {"binary_data_size": declared},
                }
            ]
        }
    ).encode()
    return head + raw, {HEADER: str(len(head))}


def _bytes_elements(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


HTTP_CASES: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    ("product overflows", "identity_fp32", _doc(shape=[2**62, 2**62], data=[]), {}, 400, "too large"),
    ("zero times huge", "identity_fp32", _doc(shape=[0, 2**62, 2**62], data=[]), {}, 400, "too large"),
    ("too many dims", "identity_fp32", _doc(shape=[1] * 100, data=[1]), {}, 400, "dimensions"),
    (
        "dim beyond 64 bits",
        "identity_fp32",
        b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,1e30],"data":[]}]}',
        {},
        400,
        "shape",
    ),
    ("negative dim", "identity_fp32", _doc(shape=[-1, 4]), {}, 400, "non-negative"),
    ("zero batch", "identity_fp32", _doc(shape=[0, 4], data=[]), {}, 400, "at least 1"),
    ("float dims", "identity_fp32", _doc(shape=[1.0, 4.0]), {}, 400, "shape"),
    ("bool dims", "identity_fp32", _doc(shape=[True, 4]), {}, 400, "shape"),
    ("shape as text", "identity_fp32", _doc(shape="[1,4]"), {}, 400, "shape"),
    ("data short", "identity_fp32", _doc(data=[1, 2, 3]), {}, 400, "needs 4 elements"),
    ("ragged data", "identity_fp32", _doc(data=[[1, 2, 3], [4]]), {}, 400, "rectangular"),
    (
        "deeply nested data",
        "identity_fp32",
        (
            '{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":'
            + "[" * 500
            + "1"
            + "]" * 500
            + "}]}"
        ).encode(),
        {},
        400,
        "",
    ),
    (
        "nesting past the JSON depth limit",
        "identity_fp32",
        ('{"inputs":' + "[" * 5000 + "]" * 5000 + "}").encode(),
        {},
        400,
        "malformed JSON",
    ),
    (
        "NaN literal",
        "identity_fp32",
        b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[NaN,1,2,3]}]}',
        {},
        400,
        "malformed JSON",
    ),
    (
        "number beyond double",
        "identity_fp32",
        b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1e400,1,2,3]}]}',
        {},
        400,
        "malformed JSON",
    ),
    (
        "beyond FP16",
        "identity_fp16",
        _doc(datatype="FP16", data=[1e6, 1, 1, 1]),
        {},
        400,
        "out of range for FP16",
    ),
    ("beyond FP32", "identity_fp32", _doc(data=[1e300, 1, 1, 1]), {}, 400, "out of range for FP32"),
    ("fraction in INT32", "identity_int32", _doc(datatype="INT32", data=[1.5, 2, 3, 4]), {}, 400, "integers"),
    ("huge INT64", "identity_int64", _doc(datatype="INT64", data=[2**70, 2, 3, 4]), {}, 400, "INT64"),
    (
        "negative UINT64",
        "identity_uint64",
        _doc(datatype="UINT64", data=[-1, 2, 3, 4]),
        {},
        400,
        "out of range",
    ),
    ("ints as BOOL", "identity_bool", _doc(datatype="BOOL", data=[0, 1, 0, 1]), {}, 400, "true/false"),
    ("numbers as BYTES", "identity_bytes", _doc(datatype="BYTES", data=[1, 2, 3, 4]), {}, 400, "strings"),
    (
        "lone surrogate",
        "identity_bytes",
        b'{"inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[1,4],"data":["\\ud800","a","b","c"]}]}',
        {},
        400,
        "malformed JSON",
    ),
    ("datatype as list", "identity_fp32", _doc(datatype=["FP32"]), {}, 400, "unknown datatype"),
    ("lower-case datatype", "identity_fp32", _doc(datatype="fp32"), {}, 400, "unknown datatype"),
    ("unicode input name", "identity_fp32", _doc(name="\u00e9\U0001f600"), {}, 400, "has no input"),
    (
        "duplicate inputs",
        "identity_fp32",
        json.dumps({"inputs": [FP32, FP32]}).encode(),
        {},
        400,
        "more than once",
    ),
    (
        "duplicate outputs",
        "identity_fp32",
        json.dumps({"inputs": [FP32], "outputs": [{"name": "OUTPUT0"}] * 2}).encode(),
        {},
        400,
        "more than once",
    ),
    ("body is a list", "identity_fp32", b"[1, 2]", {}, 400, "JSON object"),
    ("body is empty", "identity_fp32", b"", {}, 400, "malformed JSON"),
    ("body is not UTF-8", "identity_fp32", b'{"inputs":"\xff"}', {}, 400, "malformed JSON"),
    ("header length negative", "identity_fp32", _doc(), {HEADER: "-5"}, 400, HEADER),
    ("header length past the body", "identity_fp32", _doc(), {HEADER: "99999999999999999999"}, 400, HEADER),
    ("header length not a number", "identity_fp32", _doc(), {HEADER: "abc"}, 400, HEADER),
    ("header length cuts the JSON", "identity_fp32", _doc(), {HEADER: "10"}, 400, "malformed JSON"),
    ("binary section short", "identity_fp32", *_binary("FP32", [1, 4], 15, b"x" * 15), 400, "needs 16 bytes"),
    ("binary size past the body", "identity_fp32", *_binary("FP32", [1, 4], 16, b"x" * 8), 400, "runs past"),
    ("binary section left over", "identity_fp32", *_binary("FP32", [1, 4], 16, b"x" * 20), 400, "add up to"),
    (
        "BYTES length lies",
        "identity_bytes",
        *_binary("BYTES", [1, 4], 4, b"\xff\xff\xff\xff"),
        400,
        "runs past",
    ),
    (
        "BYTES count wrong",
        "identity_bytes",
        *_binary("BYTES", [1, 4], 10, _bytes_elements(b"a", b"b")),
        400,
        "BYTES elements",
    ),
    (
        "BYTES not UTF-8 for a text model",
        "identity_bytes",
        *_binary("BYTES", [1, 4], 20, _bytes_elements(b"\xff", b"a", b"b", b"c")),
        400,
        "UTF-8",
    ),
    ("BF16 as JSON", "identity_bf16", _doc(datatype="BF16"), {}, 400, "binary form"),
    (
        "priority not an integer",
        "identity_fp32",
        json.dumps({"inputs": [FP32], "parameters": {"priority": "high"}}).encode(),
        {},
        400,
        "priority",
    ),
]


@pytest.mark.parametrize(
    ("model", "body", "headers", "status", "message"),
    [case[1:] for case in HTTP_CASES],
    ids=[case[0] for case in HTTP_CASES],
)
def test_rest_rejects_cleanly(
    server: RunningServer, model: str, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    got, response_headers, payload = request(
        server.http_url, "POST", f"/v2/models/{model}/infer", body, headers
    )
    assert got == status, payload
    assert response_headers["content-type"] == "application/json"
    error = json.loads(payload)
    assert set(error) == {"error"} and message in error["error"]


def _tensor(datatype: str = "FP32", shape: tuple[int, ...] = (1, 4), **contents: object) -> object:
    tensor = pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype=datatype, shape=list(shape))
    if contents:
        tensor.contents.CopyFrom(pb.InferTensorContents(**contents))
    return tensor


RAW = np.arange(4, dtype=np.float32).tobytes()
GRPC_CASES: list[tuple[str, dict[str, object], str]] = [
    ("raw contents too short", {"inputs": [_tensor()], "raw_input_contents": [RAW[:-1]]}, "needs 16 bytes"),
    (
        "raw contents too long",
        {"inputs": [_tensor()], "raw_input_contents": [RAW + b"\x00"]},
        "needs 16 bytes",
    ),
    ("more raw contents than inputs", {"inputs": [_tensor()], "raw_input_contents": [RAW, RAW]}, "2 entries"),
    ("typed contents of the wrong type", {"inputs": [_tensor(int_contents=[1, 2, 3, 4])]}, "fp32_contents"),
    ("typed contents too few", {"inputs": [_tensor(fp32_contents=[1, 2])]}, "needs 4 elements"),
    (
        "typed contents and raw",
        {"inputs": [_tensor(fp32_contents=[1, 2, 3, 4])], "raw_input_contents": [RAW]},
        "both",
    ),
    ("typed product overflows", {"inputs": [_tensor(shape=(2**32, 2**32), fp32_contents=[])]}, "too large"),
    (
        "raw zero times huge",
        {"inputs": [_tensor(shape=(0, 2**62))], "raw_input_contents": [b""]},
        "too large",
    ),
    ("negative dim", {"inputs": [_tensor(shape=(-1, 4))], "raw_input_contents": [RAW]}, "non-negative"),
    ("too many dims", {"inputs": [_tensor(shape=(1,) * 100)], "raw_input_contents": [RAW[:4]]}, "dimensions"),
    (
        "unknown datatype",
        {"inputs": [_tensor(datatype="FOO")], "raw_input_contents": [RAW]},
        "unknown datatype",
    ),
    (
        "duplicate inputs",
        {"inputs": [_tensor(), _tensor()], "raw_input_contents": [RAW, RAW]},
        "more than once",
    ),
    ("no inputs", {}, "no inputs"),
    (
        "priority as text",
        {
            "inputs": [_tensor()],
            "raw_input_contents": [RAW],
            "parameters": {"priority": pb.InferParameter(string_param="x")},
        },
        "priority",
    ),
]


@pytest.mark.parametrize(("fields", "message"), [c[1:] for c in GRPC_CASES], ids=[c[0] for c in GRPC_CASES])
def test_grpc_rejects_cleanly(server: RunningServer, fields: dict[str, object], message: str) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.ModelInfer(pb.ModelInferRequest(model_name="identity_fp32", **fields), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, failure.value.details()
    assert message in failure.value.details()


def test_grpc_typed_out_of_range_and_non_utf8_bytes(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for model, tensor in (
            ("identity_int8", _tensor("INT8", int_contents=[1000, 1, 1, 1])),
            ("identity_bytes", _tensor("BYTES", bytes_contents=[b"\xff", b"a", b"b", b"c"])),
        ):
            with pytest.raises(grpc.RpcError) as failure:
                stub.ModelInfer(pb.ModelInferRequest(model_name=model, inputs=[tensor]), timeout=30)
            assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
