"""``inferd`` command line: flags map onto Settings, which holds every default."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from inferd.cli_security import keys, security_options, security_overrides
from inferd.errors import ModelLoadError
from inferd.settings import Settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inferd")
def main() -> None:
    """inferd: serve models over the Open Inference Protocol (KServe V2), REST and gRPC."""


@main.command()
@click.argument("model_repository", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", help="Address for both REST and gRPC (default 127.0.0.1).")
@click.option("--http-port", type=int, help="REST port; 0 picks a free one (default 8000).")
@click.option("--grpc-port", type=int, help="gRPC port; 0 picks a free one (default 8001).")
@click.option("--no-grpc", is_flag=True, default=None, help="Serve REST only.")
@click.option(
    "--max-body-bytes", type=int, help="Largest REST request body; larger gets 413 (default 64 MiB)."
)
@click.option(
    "--grpc-max-message-bytes", type=int, help="Largest gRPC message, sent or received (default 64 MiB)."
)
@click.option(
    "--exit-on-error/--no-exit-on-error",
    default=None,
    help="Exit non-zero when a model fails to load (default), or start with it marked not ready.",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help='Write {"http": PORT, "grpc": PORT} here once serving.',
)
@click.option(
    "--drain-timeout", type=float, help="Seconds to finish accepted requests on SIGTERM (default 30)."
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Default info.")
@security_options
def serve(model_repository: Path, **flags: Any) -> None:
    """Serve every model in MODEL_REPOSITORY (<model>/<version>/model.onnx, optional config.yaml)."""
    settings = Settings(model_repository=model_repository, **_settings_overrides(flags))
    _configure_logging(settings.log_level)
    from inferd.app import Server  # deferred: keeps `inferd --help` fast

    try:
        server = Server(settings)
    except ValueError as exc:  # bad key file or TLS files: named in the message, never a key
        click.echo(f"inferd: {exc}", err=True)
        sys.exit(1)
    try:
        server.load_models()
    except (ModelLoadError, FileNotFoundError) as exc:
        click.echo(f"inferd: cannot load the model repository: {exc}", err=True)
        sys.exit(1)
    _run(server.serve())


def _settings_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Only flags the user gave: everything else keeps the Settings (or INFERD_* environment) value."""
    given = {k: v for k, v in flags.items() if v is not None}
    http: dict[str, Any] = {}
    grpc: dict[str, Any] = {}
    if "host" in given:
        http["host"] = grpc["host"] = given["host"]
    if "http_port" in given:
        http["port"] = given["http_port"]
    if "grpc_port" in given:
        grpc["port"] = given["grpc_port"]
    if "max_body_bytes" in given:
        http["max_body_bytes"] = given["max_body_bytes"]
    if "grpc_max_message_bytes" in given:
        grpc["max_message_bytes"] = given["grpc_max_message_bytes"]
    if given.get("no_grpc"):
        grpc["enabled"] = False
    overrides: dict[str, Any] = {}
    defaults = Settings()
    if http:
        overrides["http"] = {**defaults.http.model_dump(), **http}
    if grpc:
        overrides["grpc"] = {**defaults.grpc.model_dump(), **grpc}
    security = security_overrides(given)
    if security:
        overrides["security"] = {**defaults.security.model_dump(), **security}
    for flag, field in (
        ("exit_on_error", "exit_on_error"),
        ("port_file", "port_file"),
        ("drain_timeout", "drain_timeout_s"),
        ("log_level", "log_level"),
    ):
        if flag in given:
            overrides[field] = given[flag]
    return overrides


def _run(coroutine: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


@main.group()
def examples() -> None:
    """Bundled example models."""


@examples.command("build")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
def build_examples(dest: Path) -> None:
    """Write the example model repository (mlp, tabular) into DEST."""
    from inferd.examples import build_repository

    names = build_repository(dest)
    click.echo(f"wrote {', '.join(names)} to {dest}")


main.add_command(keys)
