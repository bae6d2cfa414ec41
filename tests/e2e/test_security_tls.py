"""TLS and mutual TLS on both front-ends, with certificates made in the test."""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path

import gevent.ssl
import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto
from serverctl import RunningServer, run_server_expecting_exit
from tlscerts import Certificates, make_certificates
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    mf.write_model(
        root, "identity", lambda p: mf.identity(p, TensorProto.FLOAT), config="max_batch_size: 4\n"
    )
    return root


def _inputs(module: object) -> list[object]:
    tensor = module.InferInput("INPUT0", [1, 4], "FP32")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(np.arange(4, dtype=np.float32).reshape(1, 4))
    return [tensor]


def _http_client(
    server: RunningServer, certs: Certificates, client_cert: bool
) -> httpclient.InferenceServerClient:
    def context() -> ssl.SSLContext:
        ctx = gevent.ssl.create_default_context(cafile=str(certs.ca))
        if client_cert:
            ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
        return ctx

    return httpclient.InferenceServerClient(server.http_url, ssl=True, ssl_context_factory=context)


def _grpc_client(
    server: RunningServer, certs: Certificates, client_cert: bool
) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(
        server.grpc_url,
        ssl=True,
        root_certificates=str(certs.ca),
        private_key=str(certs.client_key) if client_cert else None,
        certificate_chain=str(certs.client_cert) if client_cert else None,
    )


def _https_get(
    server: RunningServer, certs: Certificates, path: str, client_cert: bool = False
) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=certs.ca)
    if client_cert:
        context.load_cert_chain(certs.client_cert, certs.client_key)
    connection = http.client.HTTPSConnection("127.0.0.1", server.http_port, context=context, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert connection.sock is not None
        return response.status, str(connection.sock.version())
    finally:
        connection.close()


def test_rest_and_grpc_serve_over_tls(tls_server: RunningServer, certs: Certificates) -> None:
    expected = np.arange(4, dtype=np.float32).reshape(1, 4)
    rest = _http_client(tls_server, certs, client_cert=False)
    np.testing.assert_array_equal(rest.infer("identity", _inputs(httpclient)).as_numpy("OUTPUT0"), expected)
    grpc = _grpc_client(tls_server, certs, client_cert=False)
    np.testing.assert_array_equal(grpc.infer("identity", _inputs(grpcclient)).as_numpy("OUTPUT0"), expected)
    status, version = _https_get(tls_server, certs, "/v2/health/live")
    assert status == 200 and version in {"TLSv1.2", "TLSv1.3"}


def test_plain_text_clients_get_nothing_from_a_tls_server(tls_server: RunningServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", tls_server.http_port, timeout=30)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            connection.request("GET", "/v2/health/live")
            connection.getresponse()
    finally:
        connection.close()
    plain = grpcclient.InferenceServerClient(tls_server.grpc_url)
    with pytest.raises(InferenceServerException) as refused:
        plain.is_server_live(client_timeout=10)
    assert "UNAVAILABLE" in str(refused.value.status())


def test_mtls_serves_clients_with_a_certificate(mtls_server: RunningServer, certs: Certificates) -> None:
    assert _http_client(mtls_server, certs, client_cert=True).is_server_ready()
    grpc = _grpc_client(mtls_server, certs, client_cert=True)
    assert grpc.infer("identity", _inputs(grpcclient)).as_numpy("OUTPUT0").shape == (1, 4)
    assert _https_get(mtls_server, certs, "/v2/health/ready", client_cert=True)[0] == 200


def test_mtls_refuses_clients_without_a_certificate(mtls_server: RunningServer, certs: Certificates) -> None:
    # With TLS 1.3 the client finishes its handshake first; the refusal arrives on the first read.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _https_get(mtls_server, certs, "/v2/health/ready", client_cert=False)
    grpc = _grpc_client(mtls_server, certs, client_cert=False)
    with pytest.raises(InferenceServerException) as refused:
        grpc.is_server_live(client_timeout=10)
    assert "UNAVAILABLE" in str(refused.value.status())


def test_mtls_refuses_a_certificate_from_another_ca(
    mtls_server: RunningServer, certs: Certificates, tmp_path: Path
) -> None:
    stranger = make_certificates(tmp_path)
    context = ssl.create_default_context(cafile=certs.ca)
    context.load_cert_chain(stranger.client_cert, stranger.client_key)
    connection = http.client.HTTPSConnection("127.0.0.1", mtls_server.http_port, context=context, timeout=30)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            connection.request("GET", "/v2/health/ready")
            connection.getresponse().read()
    finally:
        connection.close()


def test_missing_or_half_tls_settings_stop_start_up(repository: Path, certs: Certificates) -> None:
    only_cert = run_server_expecting_exit(repository, "--tls-cert", str(certs.server_cert))
    assert only_cert.returncode == 1 and "--tls-key" in only_cert.stderr
    wrong_key = run_server_expecting_exit(
        repository, "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.client_key)
    )
    assert wrong_key.returncode == 1 and "cannot load TLS files" in wrong_key.stderr
