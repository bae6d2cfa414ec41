"""-H headers, --api-key and the client TLS files (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tlscerts import make_certificates

from inferd.bench.credentials import (
    ClientTls,
    CredentialError,
    grpc_metadata,
    parse_header,
    request_headers,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("X-Tenant: blue", ("X-Tenant", "blue")),
        ("X-Tenant:blue", ("X-Tenant", "blue")),  # perf_analyzer's form
        ("Authorization: Bearer a:b", ("Authorization", "Bearer a:b")),  # only the first colon splits
        ("X-Empty:", ("X-Empty", "")),
    ],
)
def test_parse_header(text: str, expected: tuple[str, str]) -> None:
    assert parse_header(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no colon", "Name: value"),
        ("bad name: v", "Name: value"),
        (": v", "Name: value"),
        ("X-A: one\r\nX-Injected: two", "one line"),
        ("Content-Length: 3", "sets this header itself"),
        ("host: elsewhere", "sets this header itself"),
        ("trace-bin: AAAA", "binary"),
    ],
)
def test_parse_header_refuses(text: str, message: str) -> None:
    with pytest.raises(CredentialError, match=message):
        parse_header(text)


def test_api_key_becomes_a_bearer_header() -> None:
    headers = request_headers(("X-Tenant: blue",), " inferd_k ")
    assert headers == (("X-Tenant", "blue"), ("Authorization", "Bearer inferd_k"))
    assert grpc_metadata(headers) == (("x-tenant", "blue"), ("authorization", "Bearer inferd_k"))
    assert grpc_metadata(()) is None
    with pytest.raises(CredentialError, match="keep one"):
        request_headers(("authorization: Bearer other",), "inferd_k")
    with pytest.raises(CredentialError, match="empty"):
        request_headers((), "  ")


def test_client_tls_files(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    ClientTls().check()  # the system's CAs
    ClientTls(certs.ca, certs.client_cert, certs.client_key).check()
    assert ClientTls(certs.ca).grpc_credentials() is not None
    with pytest.raises(CredentialError, match="go together"):
        ClientTls(certs.ca, certs.client_cert).check()
    with pytest.raises(CredentialError, match="--ssl-cert-file"):
        ClientTls(certs.ca, certs.client_cert, certs.server_key).check()  # not its key
    with pytest.raises(CredentialError, match="--ssl-ca-file"):
        ClientTls(certs.client_key).check()  # a key is not a CA
