"""A graceful stop must not drop a request a keep-alive client sent just as the stop began.

uvicorn closes idle keep-alive connections the moment it stops; a client that had just read its
answer and sent the next request then saw the connection drop with no answer (seen in CI as a rare
failure of the workers' drain test). inferd's protocol keeps a just-answered connection open for a
grace, answers what arrives with ``connection: close``, and closes it.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import modelfactory as mf
import pytest
from inprocess import serve_in_thread
from onnx import TensorProto

from inferd.app import Server
from inferd.http.protocol import BoundedHttpToolsProtocol
from inferd.settings import GrpcSettings, HttpSettings, Settings

BODY = json.dumps(
    {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
).encode()


def _refused(address: str) -> bool:
    host, port = address.split(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_request_sent_as_the_stop_begins_is_answered_with_connection_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Generous, so that how quickly this test reacts plays no part; the default is half a second.
    monkeypatch.setattr(BoundedHttpToolsProtocol, "drain_grace_s", 60.0)
    repository = tmp_path / "models"
    mf.write_model(
        repository, "identity", lambda p: mf.identity(p, TensorProto.FLOAT), config="max_batch_size: 4\n"
    )
    port_file = tmp_path / "ports.json"
    settings = Settings(
        model_repository=repository, http=HttpSettings(port=0), grpc=GrpcSettings(port=0), port_file=port_file
    )
    server = Server(settings)
    server.load_models()
    with serve_in_thread(server, port_file) as serving:
        host, port = serving.http.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("POST", "/v2/models/identity/infer", BODY)
        first = connection.getresponse()
        assert first.status == 200 and first.getheader("connection") is None
        first.read()
        serving.request_stop()
        # The listener closes in the same step as uvicorn's shutdown of every open connection.
        deadline = time.monotonic() + 30
        while not _refused(serving.http):
            assert time.monotonic() < deadline, "the server did not stop accepting"
            time.sleep(0.01)
        # On the old code the connection was already closed: RemoteDisconnected here.
        connection.request("POST", "/v2/models/identity/infer", BODY)
        second = connection.getresponse()
        second.read()
        assert second.status in (200, 503)  # served, or refused by the draining data plane
        assert second.getheader("connection") == "close"
        connection.close()
