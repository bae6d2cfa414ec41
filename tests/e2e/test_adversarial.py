"""Hostile and malformed requests in every encoding: each gets a clear 4xx V2 error, never a 500 or a hang."""

from __future__ import annotations

import json
import struct

import grpc
import numpy as np
import pytest
from httputil import request
from procusage import measured
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
    (
        "bools mixed into INT32",
        "identity_int32",
        _doc(datatype="INT32", data=[True, 1, 2, 3]),
        {},
        400,
        "integers",
    ),
    ("bools mixed into FP32", "identity_fp32", _doc(data=[1.5, False, 2, 3]), {}, 400, "numbers"),
    ("raw BOOL byte 2", "identity_bool", *_binary("BOOL", [1, 4], 4, b"\x00\x01\x02\x01"), 400, "0 or 1"),
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
    (
        "unicode input name",
        "identity_fp32",
        _doc(name="\u00e9\U0001f600"),
        {},
        400,
        "unexpected inference input",
    ),
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


def test_grpc_raw_bool_bytes_other_than_0_and_1_are_refused(server: RunningServer) -> None:
    tensor = _tensor("BOOL")
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failure:
            stub.ModelInfer(
                pb.ModelInferRequest(
                    model_name="identity_bool", inputs=[tensor], raw_input_contents=[b"\x00\x01\x02\x01"]
                ),
                timeout=30,
            )
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "0 or 1" in failure.value.details()


def test_undecodable_protobuf_is_invalid_argument(server: RunningServer) -> None:
    garbage = b"\xff\xff\xff\xff"
    with grpc.insecure_channel(server.grpc_url) as channel:
        for method in ("ModelInfer", "ModelReady", "ModelMetadata"):
            call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
            with pytest.raises(grpc.RpcError) as failure:
                call(garbage, timeout=30)
            assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, failure.value.details())
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        with pytest.raises(grpc.RpcError) as failure:
            list(stream(iter([garbage]), timeout=30))
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # The server is unharmed.
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live


# Decode before refuse: a declared shape the model refuses (here a batch far beyond its max_batch_size)
# is refused from the header, before any element is decoded. The old code decoded first: seconds of
# server CPU and hundreds of MB for these payloads. CPU time (not wall time) is asserted, with bounds
# several times what the check costs, so a busy machine does not make them flaky.
ELEMENTS = 6_000_000
CPU_BOUND_S = 0.8


def test_millions_of_json_strings_beyond_the_batch_limit_are_refused_from_the_header(
    server: RunningServer,
) -> None:
    body = (
        f'{{"inputs":[{{"name":"INPUT0","datatype":"BYTES","shape":[{ELEMENTS // 4},4],"data":['
        + ",".join(['""'] * ELEMENTS)
        + "]}]}"
    ).encode()
    with measured(server.process.pid) as usage:
        status, _, payload = request(server.http_url, "POST", "/v2/models/identity_bytes/infer", body)
    assert status == 400 and b"max_batch_size" in payload, payload
    # Old: ~2 s of CPU. What remains is reading the body and orjson's parse, which the body limit bounds.
    assert usage.cpu_s < CPU_BOUND_S, usage


def test_a_large_binary_bytes_tensor_beyond_the_batch_limit_is_refused_unread(
    server: RunningServer,
) -> None:
    elements = 4_000_000  # zero-length BYTES elements: 16 MB of 4-byte length prefixes
    raw = b"\x00" * (4 * elements)
    body, headers = _binary("BYTES", [elements // 4, 4], len(raw), raw)
    with measured(server.process.pid) as usage:
        status, _, payload = request(
            server.http_url, "POST", "/v2/models/identity_bytes/infer", body, headers
        )
    assert status == 400 and b"max_batch_size" in payload, payload
    # Old: ~4 s of CPU walking every element, and ~6x the body in memory.
    assert usage.cpu_s < CPU_BOUND_S, usage
    assert usage.peak_growth_mb < 3 * len(body) / 2**20, usage


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field: these attacks are written on the wire directly, as a
    protobuf library would take a GB to build them."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _input(shape: list[int], contents: bytes = b"") -> bytes:
    tensor = _field(1, b"INPUT0") + _field(2, b"BYTES") + _field(3, b"".join(map(_varint, shape)))
    return _field(5, tensor + (_field(5, contents) if contents else b""))


# Every attack: tens of millions of tiny repeated entries in a message within the 64 MiB gRPC limit,
# gzip-compressed to ~60 KB on the wire (31 M entries is the attack).
ENTRIES = 31_000_000
EMPTY_BYTES_CONTENTS = b"\x42\x00" * ENTRIES  # field 8 (bytes_contents), length 0, repeated
GRPC_FLOODS = {
    # The issue's: a declared batch the model refuses; the contents are never read.
    "bytes_contents, batch refused": (_input([ENTRIES // 4, 4], EMPTY_BYTES_CONTENTS), "max_batch_size"),
    # A declared shape the model admits: the contents are read no further than its 4 elements.
    "bytes_contents, shape admitted": (_input([1, 4], EMPTY_BYTES_CONTENTS), "needs 4 elements"),
    "empty inputs entries": (_input([1, 4]) + b"\x2a\x00" * ENTRIES, "protobuf fields"),
    "empty raw_input_contents": (_input([1, 4]) + b"\x3a\x00" * ENTRIES, "protobuf fields"),
    "a shape of millions of dimensions": (_field(5, _field(3, b"\x01" * 2 * ENTRIES)), "dimensions"),
}


@pytest.mark.parametrize("attack", GRPC_FLOODS, ids=list(GRPC_FLOODS))
def test_millions_of_grpc_entries_gzip_compressed_are_refused_before_they_are_parsed(
    server: RunningServer, attack: str
) -> None:
    payload, refusal = GRPC_FLOODS[attack]
    wire = _field(1, b"identity_bytes") + payload
    assert len(wire) < 2**26
    with (
        grpc.insecure_channel(server.grpc_url, options=[("grpc.max_send_message_length", 2**26)]) as channel,
        measured(server.process.pid) as usage,
    ):
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as failure:
            call(wire, timeout=60, compression=grpc.Compression.Gzip)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal in failure.value.details()
    # Old: 1.6-3 s of CPU and +1.0 GB (bytes_contents, dimensions: ~34 B per entry), ~2.7 GB for empty
    # inputs. Now what remains is gRPC's own copies of the 59 MiB message (its decompressed buffer, the
    # bytes handed to the deserializer) and the parse's copy of the contents blob: ~2-4x the message.
    assert usage.cpu_s < 1.2, usage
    assert usage.peak_growth_mb < 4 * len(wire) / 2**20 + 20, usage
