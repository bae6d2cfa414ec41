"""A server that dies mid-run stops the benchmark with one clear line instead of a retry loop."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import modelfactory as mf
import pytest
from httputil import request
from serverctl import start_server
from synthserver import Behaviour, synthetic_server

from inferd.bench.clients import HttpSubmitter
from inferd.bench.endpoint import Endpoint
from inferd.bench.load import ServerGone, closed_loop
from inferd.bench.payloads import RestPayload


def test_a_closed_loop_stops_when_the_server_goes_away() -> None:
    async def run(port: int) -> None:
        submitter = HttpSubmitter(Endpoint("http", "127.0.0.1", port), "m", "", RestPayload(b"{}", None))
        await submitter.open()
        try:
            await closed_loop(submitter, 4, 0.0, 60.0, drain_s=1.0)
        finally:
            await submitter.close()

    with ExitStack() as stack:
        port = stack.enter_context(synthetic_server(Behaviour()))
        stopper = threading.Timer(0.5, stack.close)  # the server closes its listener and connections
        stopper.start()
        started = time.monotonic()
        cpu = time.process_time()
        with pytest.raises(ServerGone, match="stopped accepting connections") as failure:
            asyncio.run(run(port))
        stopper.join()
    # Stopped promptly, not after the 60 s run, and without spinning the CPU meanwhile.
    assert time.monotonic() - started < 10
    assert time.process_time() - cpu < 5
    assert re.search(r"\d{3} connection attempts in a row failed \(\[Errno \d+\]", str(failure.value))


def _inferences(http_url: str) -> int:
    status, _, body = request(http_url, "GET", "/v2/models/m/stats")
    assert status == 200
    return int(json.loads(body)["model_stats"][0]["inference_count"])


@pytest.mark.parametrize("scheme", ["http", "grpc"])
@pytest.mark.parametrize("extra", [["--concurrency", "2"], ["--rate", "200"]], ids=["closed", "open"])
def test_bench_against_a_server_killed_mid_run(tmp_path: Path, scheme: str, extra: list[str]) -> None:
    mf.write_model(tmp_path / "models", "m", lambda p: mf.add_constant(p, 1.0))
    server = start_server(tmp_path / "models", tmp_path)
    url = f"{scheme}://{server.http_url if scheme == 'http' else server.grpc_url}"
    bench = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inferd",
            "bench",
            url,
            "-m",
            "m",
            "--duration",
            "60",
            "--no-progress",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _inferences(server.http_url) < 50:  # the run is under way
            assert bench.poll() is None, bench.communicate()
            assert time.monotonic() < deadline, "bench never sent its load"
            time.sleep(0.2)
        server.process.kill()
        server.process.wait()
        killed = time.monotonic()
        stdout, stderr = bench.communicate(timeout=30)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.communicate()
    assert time.monotonic() - killed < 20  # not the 60 s run
    assert bench.returncode == 1, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: the server stopped accepting connections, so the run stopped:"
    ), stderr
