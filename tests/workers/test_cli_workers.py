"""``inferd serve --workers``: what the flag accepts, refused before anything starts."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from inferd.cli import main


def test_a_bad_worker_count_is_a_usage_error(tmp_path: Path) -> None:
    for bad in ("0", "many", "-2"):
        result = CliRunner().invoke(main, ["serve", str(tmp_path), "--workers", bad])
        assert result.exit_code == 2, result.output
        assert "--workers" in result.output


def test_workers_with_a_separate_metrics_port_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--workers", "2", "--metrics-port", "0"])
    assert result.exit_code == 2, result.output
    assert "--metrics-port" in result.output


def test_the_serve_help_names_workers() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert "--workers" in result.output and "auto" in result.output
