"""Start and stop a real inferd process on 127.0.0.1 with ports it picked itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path
    # Set when the server was started with --metrics-port.
    metrics_port: int | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("inferd did not exit within 30 s of SIGTERM:\n" + self.log()) from None


def start_server(repository: Path, workdir: Path, *extra: str) -> RunningServer:
    """Start ``inferd serve`` on free ports and wait until it reports them (it is then ready)."""
    port_file = workdir / f"ports-{time.monotonic_ns()}.json"
    log_path = port_file.with_suffix(".log")
    command = [
        sys.executable,
        "-m",
        "inferd",
        "serve",
        str(repository),
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--port-file",
        str(port_file),
        *extra,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.monotonic() + START_TIMEOUT_S
    while not port_file.exists():
        if process.poll() is not None:
            raise AssertionError(f"inferd exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"inferd did not start in {START_TIMEOUT_S} s:\n{log_path.read_text()}")
        time.sleep(0.05)
    ports = json.loads(port_file.read_text())
    return RunningServer(process, ports["http"], ports["grpc"], log_path, ports.get("metrics"))


def run_server_expecting_exit(
    repository: Path, *extra: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "inferd",
        "serve",
        str(repository),
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
