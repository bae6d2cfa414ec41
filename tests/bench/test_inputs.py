"""Benchmark inputs from metadata or files, and their wire encodings (checked with the server's codec)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inferd.bench.endpoint import BenchError
from inferd.bench.inputs import batch_rows, load_inputs, parse_shapes, random_inputs
from inferd.bench.payloads import grpc_payload, rest_payload
from inferd.protocol import grpc_codec
from inferd.protocol.json_codec import decode_request

METADATA = {
    "name": "m",
    "inputs": [
        {"name": "ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
    ],
}


def test_parse_shapes() -> None:
    assert parse_shapes(["ids:128", "img:3,224,224"]) == {"ids": (128,), "img": (3, 224, 224)}
    for bad in ("ids", "ids:", ":3", "ids:a", "ids:-1"):
        with pytest.raises(BenchError, match="--shape"):
            parse_shapes([bad])


def test_random_inputs_fill_batch_and_dynamic_dims() -> None:
    tensors = random_inputs(METADATA, 4, {"ids": (16,)})
    assert [(t.name, t.datatype, t.shape) for t in tensors] == [
        ("ids", "INT64", (4, 16)),
        ("x", "FP32", (4, 3)),
    ]
    assert tensors[0].data.dtype == np.int64
    assert tensors[1].data.dtype == np.float32
    assert batch_rows(tensors, METADATA) == 4
    # a full shape (batch included) is taken as it is
    assert random_inputs(METADATA, 4, {"ids": (2, 5)})[0].shape == (2, 5)
    assert not random_inputs(METADATA, 1, {"ids": (3,)}, zeros=True)[1].data.any()


def test_random_inputs_explain_what_is_missing() -> None:
    with pytest.raises(BenchError, match="--shape ids"):
        random_inputs(METADATA, 1, {})
    with pytest.raises(BenchError, match="unknown inputs"):
        random_inputs(METADATA, 1, {"ids": (3,), "nope": (1,)})
    with pytest.raises(BenchError, match="without the batch dim"):
        random_inputs(METADATA, 1, {"ids": (3, 4, 5)})


def test_unbatched_model_sends_one_inference_per_request() -> None:
    metadata = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [3, 4]}]}
    tensors = random_inputs(metadata, 8, {})
    assert tensors[0].shape == (3, 4)
    assert isinstance(tensors[0].data.flat[0], bytes)
    assert batch_rows(tensors, metadata) == 1


def test_load_inputs_from_json_and_npz(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"ids": [[1, 2, 3]], "x": [[0.5, 1.5, 2.5]]}))
    tensors = load_inputs(plain, METADATA)
    assert tensors[0].data.tolist() == [[1, 2, 3]] and tensors[0].data.dtype == np.int64
    assert tensors[1].data.dtype == np.float32
    v2 = tmp_path / "v2.json"
    v2.write_text(
        json.dumps(
            {
                "inputs": [
                    {"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": [7, 8]},
                    {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                ]
            }
        )
    )
    assert load_inputs(v2, METADATA)[0].data.tolist() == [[7, 8]]
    npz = tmp_path / "in.npz"
    np.savez(npz, ids=np.ones((2, 4), dtype=np.int32), x=np.zeros((2, 3)))
    tensors = load_inputs(npz, METADATA)
    assert tensors[0].data.dtype == np.int64 and tensors[0].shape == (2, 4)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"ids": [[1]]}))
    with pytest.raises(BenchError, match="missing \\['x'\\]"):
        load_inputs(missing, METADATA)
    with pytest.raises(BenchError, match="cannot read"):
        load_inputs(tmp_path / "absent.npz", METADATA)


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_rest_payload_decodes_on_the_server(encoding: str) -> None:
    tensors = random_inputs(METADATA, 2, {"ids": (5,)})
    payload = rest_payload(tensors, encoding)  # type: ignore[arg-type]
    assert (payload.json_length is None) == (encoding == "json")
    request = decode_request(payload.body, payload.json_length, "m", None)
    decoded = {t.name: t.data for t in request.inputs}
    for tensor in tensors:
        np.testing.assert_array_equal(decoded[tensor.name], tensor.data)


def test_grpc_payload_decodes_on_the_server() -> None:
    tensors = random_inputs(METADATA, 3, {"ids": (2,)})
    message = grpc_codec.parse_infer_request(grpc_payload(tensors, "m", "2"))
    assert message.model_name == "m" and message.model_version == "2"
    request = grpc_codec.decode_infer_request(message)
    decoded = {t.name: t.data for t in request.inputs}
    for tensor in tensors:
        np.testing.assert_array_equal(decoded[tensor.name], tensor.data)


def test_a_v2_body_stands_in_for_missing_metadata(tmp_path: Path) -> None:
    # MLServer's custom runtimes can answer metadata with no inputs at all.
    bare = {"name": "m", "inputs": [], "outputs": []}
    with pytest.raises(BenchError, match="give --input-data a V2 request body"):
        random_inputs(bare, 1, {})
    body = tmp_path / "body.json"
    body.write_text(
        json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]})
    )
    (tensor,) = load_inputs(body, bare)
    assert tensor.datatype == "FP64" and tensor.data.dtype == np.float64 and tensor.shape == (2, 2)
    assert batch_rows([tensor], bare) == 1
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"x": [1.0]}))
    with pytest.raises(BenchError, match="V2 request body"):
        load_inputs(plain, bare)
