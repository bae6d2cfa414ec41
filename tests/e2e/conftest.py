"""One shared inferd process serving a repository of small models built for the tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import modelfactory as mf
import pytest
from onnx import TensorProto
from serverctl import RunningServer, start_server
from tlscerts import Certificates, make_certificates, server_flags

# V2 datatype -> ONNX element type, for the identity models that carry each datatype end to end.
IDENTITY_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
    "BF16": TensorProto.BFLOAT16,
}

BATCHING = "max_batch_size: 8\ndynamic_batching:\n  max_queue_delay_ms: 5\n"


def build_test_repository(root: Path) -> Path:
    for datatype, elem_type in IDENTITY_TYPES.items():
        mf.write_model(root, f"identity_{datatype.lower()}", lambda p, t=elem_type: mf.identity(p, t))
    mf.write_model(root, "simple", mf.add_sub, config=BATCHING)
    mf.write_model(root, "fixed", mf.fixed_shape)
    mf.write_model(root, "dynamic", mf.dynamic_dims, config=BATCHING)
    mf.write_model(root, "gather", mf.gather, config=BATCHING)
    # Two versions: the highest is served by default.
    mf.write_model(root, "versioned", lambda p: mf.identity(p, TensorProto.FLOAT), version=1)
    mf.write_model(root, "versioned", lambda p: mf.identity(p, TensorProto.FLOAT), version=3)
    return root


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_test_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(repository, tmp_path_factory.mktemp("server"))
    yield running
    code = running.stop()
    assert code == 0, running.log()


# TLS: a test module gets a server over its own `repository` fixture (or the shared one above).
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(
    repository: Path, certs: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(repository, tmp_path_factory.mktemp("tls"), *server_flags(certs))
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def mtls_server(
    repository: Path, certs: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """Also requires a client certificate signed by ``certs.ca``."""
    running = start_server(repository, tmp_path_factory.mktemp("mtls"), *server_flags(certs, client_ca=True))
    yield running
    assert running.stop() == 0, running.log()
