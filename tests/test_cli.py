"""The hardening flags map onto Settings, and a bad value is a usage error, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from serverctl import run_server_expecting_exit

from inferd.cli import _InlineBound, _settings_overrides, main
from inferd.settings import Settings


def test_cache_admission_and_limit_flags_map_onto_settings() -> None:
    flags = {
        "cache_backend": "redis://127.0.0.1:6379/1",
        "cache_bytes": 1024,
        "cache_ttl": 5.0,
        "cache_key_prefix": "p:",
        "default_timeout_us": 2500,
        "max_tensor_elements": 99,
        "max_bytes_length": 7,
        "inline_execution_max_us": 80,
        "host": None,
    }
    settings = Settings(**_settings_overrides(flags))
    assert settings.cache.backend == "redis://127.0.0.1:6379/1"
    assert (settings.cache.memory_bytes, settings.cache.ttl_s, settings.cache.key_prefix) == (1024, 5.0, "p:")
    assert settings.admission.default_timeout_us == 2500
    assert (settings.limits.max_tensor_elements, settings.limits.max_bytes_length) == (99, 7)
    assert settings.scheduling.inline_execution_max_us == 80


def test_defaults_without_flags() -> None:
    settings = Settings(**_settings_overrides({}))
    assert settings.cache.backend == "memory" and settings.admission.default_timeout_us == 0
    # A lone request's execution bound is measured (inferd/scheduler/lone.py) unless a flag fixes it.
    assert settings.scheduling.inline_execution_max_us == "auto"


@pytest.mark.parametrize(("given", "expected"), [("auto", "auto"), ("0", 0), ("250", 250)])
def test_the_inline_bound_is_auto_or_microseconds(given: str, expected: object) -> None:
    value = _InlineBound().convert(given, None, None)
    settings = Settings(**_settings_overrides({"inline_execution_max_us": value}))
    assert settings.scheduling.inline_execution_max_us == expected


@pytest.mark.parametrize("given", ["fast", "-1", "10001", "1.5"])
def test_a_bad_inline_bound_is_a_usage_error(given: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--inline-execution-max-us", given])
    assert result.exit_code == 2
    assert "neither auto nor a whole number of microseconds" in result.output


def test_an_unknown_cache_backend_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--cache", "memcached://x"])
    assert result.exit_code == 2
    assert "cache backend must be 'memory', 'off' or a redis:// URL" in result.output


def test_an_invalid_limit_stops_the_server_with_a_usage_error(tmp_path: Path) -> None:
    result = run_server_expecting_exit(tmp_path, "--max-tensor-elements", "0", timeout=60)
    assert result.returncode == 2 and "max_tensor_elements" in result.stderr


def test_connection_limit_flags_map_onto_settings() -> None:
    flags = {"max_header_bytes": 4096, "max_headers": 20, "header_timeout": 2.5, "max_connections": 50}
    connections = Settings(**_settings_overrides(flags)).connections
    assert (connections.max_header_bytes, connections.max_headers) == (4096, 20)
    assert (connections.header_timeout_s, connections.max_connections) == (2.5, 50)
    defaults = Settings(**_settings_overrides({})).connections
    assert (defaults.max_header_bytes, defaults.max_headers, defaults.header_timeout_s) == (65536, 100, 10.0)


def test_the_serve_help_names_the_connection_limits() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    for flag in ("--max-header-bytes", "--max-headers", "--header-timeout", "--max-connections"):
        assert flag in result.output


def test_the_grpc_accept_loops_flag_maps_onto_settings(tmp_path: Path) -> None:
    assert Settings(**_settings_overrides({})).grpc.accept_loops == 8
    assert Settings(**_settings_overrides({"grpc_accept_loops": 1})).grpc.accept_loops == 1
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--grpc-accept-loops", "0"])
    assert result.exit_code == 2 and "--grpc-accept-loops" in result.output
