"""A port already in use stops the server at once, in one line naming the port and the flag."""

from __future__ import annotations

import socket
from pathlib import Path

import modelfactory as mf
import pytest
from serverctl import run_server_expecting_exit


@pytest.mark.parametrize("flag", ["--http-port", "--grpc-port", "--metrics-port"])
def test_port_in_use_is_one_line_before_loading_models(tmp_path: Path, flag: str) -> None:
    # A corrupt model: had the server loaded models first, it would have stopped on that instead.
    mf.write_model(tmp_path, "broken", mf.corrupt)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server_expecting_exit(tmp_path, flag, str(port))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"inferd: port {port} is in use: pass {flag}"]
