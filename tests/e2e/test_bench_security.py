"""``inferd bench`` against secured inferd servers: API keys over REST and gRPC, TLS and mutual TLS.

Each bench run loads the server for about a second; nothing here asserts on speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import modelfactory as mf
import pytest
from serverctl import RunningServer, start_server
from tlscerts import Certificates, make_certificates

from inferd.bench.endpoint import Endpoint, model_metadata
from inferd.bench.inputs import random_inputs
from inferd.bench.payloads import grpc_payload, rest_payload
from inferd.bench.runner import LoadSpec, run_here
from inferd.security.keys import hash_key, new_key

OPS, TENANT, META_ONLY = new_key(), new_key(), new_key()
# Rate-limited keys, one per protocol: a caller's bucket is shared by REST and gRPC.
LIMITED = {"http": new_key(), "grpc": new_key()}
SHORT = ["--duration", "1", "--warmup", "0.2", "--no-progress"]
# (URL scheme, extra flags, the "encoding" bench reports)
TRANSPORTS = [("http", ["--encoding", "binary"], "binary"), ("http", ["--encoding", "json"], "json"),
              ("grpc", [], "grpc")]  # fmt: skip


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    mf.write_model(root, "simple", mf.add_sub, config="max_batch_size: 8\n")
    return root


@pytest.fixture(scope="module")
def keyed(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("keyed")
    keys = workdir / "keys.yaml"
    keys.write_text(
        "keys:\n"
        f"  - id: ops\n    hash: {hash_key(OPS)}\n    apis: ['*']\n"
        f"  - id: tenant\n    hash: {hash_key(TENANT)}\n"  # default APIs: no statistics
        + "".join(
            f"  - id: limited_{name}\n    hash: {hash_key(key)}\n    rate: 0.001\n    burst: 2\n"
            for name, key in LIMITED.items()
        )
        + f"  - id: meta_only\n    hash: {hash_key(META_ONLY)}\n    apis: [metadata]\n"
    )
    running = start_server(repository, workdir, "--api-keys", str(keys))
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A second, unrelated CA and client certificate: the server trusts neither."""
    return make_certificates(tmp_path_factory.mktemp("other"))


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "INFERD_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "inferd", "bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, **(env or {})},
    )


def bench_json(*args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    done = bench(*args, *SHORT, "--json", "-", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document, done.stderr


def url(server: RunningServer, scheme: str) -> str:
    port = server.grpc_port if scheme.startswith("grpc") else server.http_port
    return f"{scheme}://127.0.0.1:{port}"


def check_ok(document: dict[str, Any], with_server_stats: bool = True) -> None:
    (run,) = document["runs"]
    assert run["errors"] == {}, run["error_samples"]
    assert run["requests_ok"] > 0 and run["requests_sent"] == run["requests_ok"]
    assert (run["server"] is not None) == with_server_stats


@pytest.mark.parametrize(("scheme", "flags", "encoding"), TRANSPORTS)
def test_api_key_is_sent_on_infer_metadata_and_statistics(
    keyed: RunningServer, scheme: str, flags: list[str], encoding: str
) -> None:
    document, _ = bench_json(url(keyed, scheme), "-m", "simple", "--api-key", OPS, *flags)
    assert document["encoding"] == encoding
    check_ok(document)  # the server split needs the key on the statistics calls too
    assert OPS not in json.dumps(document)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_key_from_the_environment_or_a_header(keyed: RunningServer, scheme: str) -> None:
    document, stderr = bench_json(url(keyed, scheme), "-m", "simple", env={"INFERD_API_KEY": TENANT})
    check_ok(document, with_server_stats=False)  # a tenant key may not read statistics: bench says so
    assert "refused its statistics" in stderr and "'metrics' API" in stderr
    document, _ = bench_json(url(keyed, scheme), "-m", "simple", "-H", f"X-API-Key:{OPS}")
    check_ok(document)


@pytest.mark.parametrize(
    ("scheme", "key", "message"),
    [
        ("http", None, "answered 401"),
        ("grpc", None, "UNAUTHENTICATED"),
        ("http", "wrong", "answered 401"),
        ("http", META_ONLY, 'HTTP 403: {"error":"key \'meta_only\' may not use the inference API'),
        ("grpc", META_ONLY, "PERMISSION_DENIED: key 'meta_only' may not use the inference API"),
    ],
)
def test_refused_credentials_are_one_clear_line(
    keyed: RunningServer, scheme: str, key: str | None, message: str
) -> None:
    done = bench(url(keyed, scheme), "-m", "simple", *SHORT, *(["--api-key", key] if key else []))
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    if key is None:
        assert "--api-key" in done.stderr


@pytest.mark.parametrize(("scheme", "kind"), [("http", "HTTP 401"), ("grpc", "UNAUTHENTICATED")])
def test_requests_without_a_key_count_as_auth_errors(keyed: RunningServer, scheme: str, kind: str) -> None:
    # Below the CLI (which stops at the refused metadata call): a run's refusals are errors by kind.
    without_key = Endpoint.parse(url(keyed, scheme))
    with_key = replace(without_key, headers=(("X-API-Key", OPS),))
    tensors = random_inputs(model_metadata(with_key, "simple"), 1, {})
    spec = LoadSpec(
        endpoint=without_key,
        model="simple",
        version="",
        rest_payload=rest_payload(tensors, "binary") if scheme == "http" else None,
        grpc_payload=grpc_payload(tensors, "simple", "") if scheme == "grpc" else None,
        mode="closed",
        warmup_s=0.0,
        duration_s=0.5,
        drain_s=5.0,
    )
    result = run_here(spec)
    assert list(result.errors) == [kind] and result.errors[kind] > 0
    assert len(result.latencies_s) == 0
    assert "API key is required" in result.error_samples[kind]


@pytest.mark.parametrize(("scheme", "kind"), [("http", "HTTP 429"), ("grpc", "RESOURCE_EXHAUSTED")])
def test_rate_limit_refusals_are_counted_by_kind(keyed: RunningServer, scheme: str, kind: str) -> None:
    # Burst 2, refilled every ~17 minutes: the probe takes one token, the run the other, then 429s.
    bearer = f"Authorization: Bearer {LIMITED[scheme]}"
    document, _ = bench_json(url(keyed, scheme), "-m", "simple", "-H", bearer)
    (run,) = document["runs"]
    assert set(run["errors"]) == {kind} and run["errors"][kind] > 0
    assert "rate limit exceeded" in run["error_samples"][kind]


@pytest.mark.parametrize("scheme", ["https", "grpcs"])
def test_tls(tls_server: RunningServer, certs: Certificates, scheme: str) -> None:
    document, _ = bench_json(url(tls_server, scheme), "-m", "simple", "--ssl-ca-file", str(certs.ca))
    check_ok(document)


@pytest.mark.parametrize("scheme", ["https", "grpcs"])
def test_mutual_tls(mtls_server: RunningServer, certs: Certificates, scheme: str) -> None:
    client = ["--ssl-cert-file", str(certs.client_cert), "--ssl-key-file", str(certs.client_key)]
    # Two generator processes: the TLS settings must reach them too.
    document, _ = bench_json(
        url(mtls_server, scheme),
        "-m",
        "simple",
        "--ssl-ca-file",
        str(certs.ca),
        *client,
        "--concurrency",
        "2",
        "--processes",
        "2",
    )
    check_ok(document)
    assert document["runs"][0]["generator"]["processes"] == 2


@pytest.mark.parametrize("scheme", ["https", "grpcs"])
def test_tls_failures_are_one_clear_line(
    tls_server: RunningServer,
    mtls_server: RunningServer,
    certs: Certificates,
    other_ca: Certificates,
    scheme: str,
) -> None:
    trusted = ["--ssl-ca-file", str(certs.ca)]
    other = ["--ssl-cert-file", str(other_ca.client_cert), "--ssl-key-file", str(other_ca.client_key)]
    cases = [
        (tls_server, ["--ssl-ca-file", str(other_ca.ca)], "--ssl-ca-file"),  # wrong CA
        (tls_server, [], "--ssl-ca-file"),  # the system's CAs do not know the test CA
        (mtls_server, trusted, "--ssl-cert-file"),  # no client certificate
        (mtls_server, trusted + other, "client certificate"),  # one the server does not trust
    ]
    for server, flags, hint in cases:
        done = bench(url(server, scheme), "-m", "simple", *SHORT, *flags)
        assert done.returncode != 0
        assert "TLS" in done.stderr and hint in done.stderr, (flags, done.stderr)
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_tls_against_a_plain_server_and_files_without_tls(keyed: RunningServer, certs: Certificates) -> None:
    done = bench(url(keyed, "https"), "-m", "simple", *SHORT, "--ssl-ca-file", str(certs.ca))
    assert done.returncode != 0 and "does not seem to speak TLS" in done.stderr, done.stderr
    done = bench(url(keyed, "http"), "-m", "simple", *SHORT, "--ssl-ca-file", str(certs.ca))
    assert done.returncode != 0 and "need an https:// or grpcs:// URL" in done.stderr
    done = bench(url(keyed, "https"), "-m", "simple", *SHORT, "--ssl-cert-file", str(certs.client_cert))
    assert done.returncode != 0 and "--ssl-cert-file and --ssl-key-file go together" in done.stderr
