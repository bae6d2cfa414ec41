"""Every V2 datatype travels through an identity model over REST JSON, REST binary and gRPC."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverctl import RunningServer

NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def sample(datatype: str, rows: int = 2) -> np.ndarray:
    rng = np.random.default_rng(len(datatype))
    if datatype == "BYTES":
        words = [b"a", b"bc", b"", "\u00e9t\u00e9".encode()]
        return np.array([words[(i + j) % 4] for i in range(rows) for j in range(4)], dtype=object).reshape(
            rows, 4
        )
    dtype = np.dtype(NUMERIC[datatype])
    if dtype.kind == "b":
        return rng.integers(0, 2, (rows, 4)).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        # Include both extremes: they must survive every encoding unchanged.
        values = rng.integers(info.min, info.max, (rows, 4), dtype=dtype, endpoint=True)
        values[0, 0], values[-1, -1] = info.min, info.max
        return values
    return rng.standard_normal((rows, 4)).astype(dtype)


ALL = [*NUMERIC, "BYTES"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", ALL)
def test_http_identity_round_trips(server: RunningServer, datatype: str, binary: bool) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    data = sample(datatype)
    infer_input = httpclient.InferInput("INPUT0", list(data.shape), datatype)
    infer_input.set_data_from_numpy(data, binary_data=binary)
    output = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    result = client.infer(f"identity_{datatype.lower()}", [infer_input], outputs=[output])
    returned = result.as_numpy("OUTPUT0")
    assert returned.shape == data.shape
    if datatype == "BYTES":
        assert [bytes(e) if not isinstance(e, str) else e.encode() for e in returned.ravel()] == list(
            data.ravel()
        )
    else:
        assert returned.dtype == data.dtype
        np.testing.assert_array_equal(returned, data)


@pytest.mark.parametrize("datatype", ALL)
def test_grpc_identity_round_trips(server: RunningServer, datatype: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    data = sample(datatype, rows=3)
    infer_input = grpcclient.InferInput("INPUT0", list(data.shape), datatype)
    infer_input.set_data_from_numpy(data)
    result = client.infer(f"identity_{datatype.lower()}", [infer_input])
    returned = result.as_numpy("OUTPUT0")
    if datatype == "BYTES":
        assert list(returned.ravel()) == list(data.ravel())
    else:
        assert returned.dtype == data.dtype
        np.testing.assert_array_equal(returned, data)


def test_bf16_round_trips_in_binary_form(server: RunningServer) -> None:
    # BF16 words: the upper halves of float32 values; sent and returned raw.
    values = np.array([[1.0, -2.5, 0.15625, 3.0e38]], dtype=np.float32)
    words = (values.view(np.uint32) >> 16).astype(np.uint16)
    http = httpclient.InferenceServerClient(server.http_url)
    infer_input = httpclient.InferInput("INPUT0", [1, 4], "BF16")
    infer_input.set_data_from_numpy(values, binary_data=True)
    result = http.infer("identity_bf16", [infer_input])
    response = result.get_response()
    assert response["outputs"][0]["datatype"] == "BF16"
    np.testing.assert_array_equal(
        result.as_numpy("OUTPUT0"), (words.astype(np.uint32) << 16).view(np.float32)
    )

    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    grpc_input = grpcclient.InferInput("INPUT0", [1, 4], "BF16")
    grpc_input.set_data_from_numpy(values)
    grpc_result = grpc.infer("identity_bf16", [grpc_input])
    np.testing.assert_array_equal(
        grpc_result.as_numpy("OUTPUT0"), (words.astype(np.uint32) << 16).view(np.float32)
    )
