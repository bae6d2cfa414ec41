"""Headers a proxy and the server could read differently are refused rather than guessed at."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from serverctl import RunningServer, start_server

from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc
from inferd.security.keys import hash_key, new_key

BODY = json.dumps(
    {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
).encode()
KEY, OTHER_KEY = new_key(), new_key()


def _send(
    address: str, path: str, headers: list[tuple[str, str]], body: bytes | None = None
) -> tuple[int, bytes]:
    """A request with exactly these header lines (repeats included), as http.client's putheader sends them."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST" if body is not None else "GET", path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_inference_header_content_length_must_be_plain_digits(server: RunningServer) -> None:
    path = "/v2/models/identity_fp32/infer"
    length = str(len(BODY))
    assert _send(server.http_url, path, [("Inference-Header-Content-Length", length)], BODY)[0] == 200
    # int() takes every one of these; a proxy may not. (A leading space is optional whitespace in
    # HTTP and never reaches the server: the parser strips it, as RFC 9110 says.)
    for value in (f"{length[0]}_{length[1:]}", f"+{length}", f"{length} ", f"{length}\t", "0x10", "-0", ""):
        status, body = _send(server.http_url, path, [("Inference-Header-Content-Length", value)], BODY)
        assert status == 400, (value, body)
        assert b"Inference-Header-Content-Length" in body
    status, _ = _send(server.http_url, path, [("Inference-Header-Content-Length", "9" * 5000)], BODY)
    assert status == 400  # too many digits for int() itself: still a 400, not a 500


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, repository: Path) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("keyed")
    keys = workdir / "keys.yaml"
    keys.write_text(
        "keys:\n"
        f"  - id: admin\n    hash: {hash_key(KEY)}\n    apis: ['*']\n"
        f"  - id: other\n    hash: {hash_key(OTHER_KEY)}\n    apis: ['*']\n"
    )
    running = start_server(repository, workdir, "--api-keys", str(keys))
    yield running
    assert running.stop() == 0, running.log()


def test_one_credential_header_is_accepted(keyed_server: RunningServer) -> None:
    for header in (("Authorization", f"Bearer {KEY}"), ("X-API-Key", KEY)):
        assert _send(keyed_server.http_url, "/v2/models/identity_fp32", [header])[0] == 200


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", f"Bearer {KEY}"), ("Authorization", f"Bearer {KEY}")],
        [("Authorization", f"Bearer {OTHER_KEY}"), ("Authorization", f"Bearer {KEY}")],
        [("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {KEY}")],
        [("X-API-Key", KEY), ("X-API-Key", KEY)],
    ],
    ids=["same key twice", "two keys", "wrong then right", "x-api-key twice"],
)
def test_a_repeated_credential_header_is_400(
    keyed_server: RunningServer, headers: list[tuple[str, str]]
) -> None:
    status, body = _send(keyed_server.http_url, "/v2/models/identity_fp32", headers)
    assert status == 400, body
    assert b"must be sent once" in body
    status, _ = _send(keyed_server.http_url, "/v2/models/identity_fp32/infer", headers, BODY)
    assert status == 400


def test_repeated_authorization_metadata_is_invalid_argument_over_grpc(keyed_server: RunningServer) -> None:
    with grpc.insecure_channel(keyed_server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        bearer = ("authorization", f"Bearer {KEY}")
        assert stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=[bearer]).name
        for metadata in ([bearer, bearer], [("x-api-key", KEY), ("x-api-key", KEY)]):
            with pytest.raises(grpc.RpcError) as refused:
                stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            request = pb.ModelInferRequest(model_name="identity_fp32")
            with pytest.raises(grpc.RpcError) as refused:  # the stream's opening check, too
                next(iter(stub.ModelStreamInfer(iter([request]), metadata=metadata)))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
