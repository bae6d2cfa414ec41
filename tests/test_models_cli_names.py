"""`inferd models NAME`: NAME is checked as the server checks it, before any URL is built from it."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from inferd.cli import main


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("command", ["load", "unload", "status", "promote", "rollback"])
@pytest.mark.parametrize("name", ["..", "../etc", "a/../b", "%2e%2e", "m" * 300])
def test_a_name_that_is_a_path_is_a_usage_error(command: str, name: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(main, ["models", "--url", url, command, name])
    assert result.exit_code == 2, result.output
    assert "model name" in result.stderr
    assert "cannot reach" not in result.stderr  # refused before any request


def test_a_valid_name_goes_to_the_server() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(main, ["models", "--url", url, "load", "fraud-a.v2"])
    assert result.exit_code == 1 and "cannot reach" in result.stderr
