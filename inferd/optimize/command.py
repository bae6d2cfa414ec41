"""``inferd optimize MODEL_DIR``: the command line over inferd.optimize.run (docs/optimize.md)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import NoReturn

import click

from inferd.errors import InferdError
from inferd.model_config import ModelConfig, load_model_config
from inferd.names import InvalidName, model_name
from inferd.optimize import config_rollout, remote, sessions
from inferd.optimize.benchmark import BenchmarkError, BenchSettings
from inferd.optimize.candidates import METHODS
from inferd.optimize.gate import Thresholds
from inferd.optimize.outcome import table
from inferd.optimize.run import Plan, Result, optimize
from inferd.optimize.samples import SampleError, Samples, load_samples
from inferd.repository.source import scan_model

# How long --rollout waits for a polling server to pick the new version up and start its canary.
_CONFIG_ROLLOUT_WAIT_S = 300.0


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"inferd optimize: {message}", err=True)
    sys.exit(code)


def _canary_percent(value: str | None) -> float | None:
    if value is None:
        return None
    kind, _, percent = value.partition(":")
    try:
        share = float(percent)
    except ValueError:
        share = -1.0
    if kind != "canary" or not 0 < share <= 100:
        raise click.BadParameter("expected canary:N with N a percentage in (0, 100]", param_hint="--rollout")
    return share


def _source(model_dir: Path, version: int | None) -> tuple[int, Path]:
    """The version optimize starts from: the one named, or the highest the version policy serves."""
    source = scan_model(model_dir)
    if source is None or not source.versions:
        _fail(f"{model_dir}: no version directory (expected e.g. {model_dir.name}/1/model.onnx)")
    config = load_model_config(model_dir)
    if version is None:
        served = config.version_policy.select(list(source.versions))
        if not served:
            _fail(f"{model_dir}: its version policy serves none of its versions")
        version = served[-1]
    path = source.versions.get(version)
    if path is None:
        _fail(f"{model_dir}: no version {version}")
    if path.name != "model.onnx" or not path.is_file():
        _fail(f"{path.parent}: optimize works on ONNX models (model.onnx), found {path.name}")
    return version, path


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--samples",
    "samples_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Inputs to judge candidates on: .npz (one array per input, axis 0 stacks rows) or JSONL "
    "of V2 requests.",
)
@click.option(
    "--from-traffic", is_flag=True, help="Use the rows of live requests the server's drift monitor keeps."
)
@click.option(
    "--server",
    default="http://127.0.0.1:8000",
    show_default=True,
    envvar="INFERD_URL",
    help="The running server (for --from-traffic and --rollout).",
)
@click.option(
    "--api-key", envvar="INFERD_API_KEY", help="Key with the repository scope, for a server with keys."
)
@click.option(
    "--max-drop",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Allowed drop below 1 of each output's mean cosine and top-1 agreement.",
)
@click.option(
    "--min-cosine",
    type=click.FloatRange(-1, 1),
    default=0.95,
    show_default=True,
    help="Lowest cosine similarity allowed on any single row.",
)
@click.option(
    "--max-abs-error",
    type=click.FloatRange(0),
    help="Largest absolute difference allowed (default: not gated).",
)
@click.option(
    "--classifier-output", multiple=True, help="Gate this output on top-1 agreement too (repeatable)."
)
@click.option(
    "--candidate",
    "user_candidates",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Judge this ONNX file instead of building candidates (repeatable).",
)
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice(METHODS),
    help="Build only this method's candidate (repeatable; default: every method).",
)
@click.option(
    "--source-version", type=click.IntRange(1), help="Start from this version (default: the served one)."
)
@click.option(
    "--max-samples", type=click.IntRange(1), default=512, show_default=True, help="Rows used at most."
)
@click.option(
    "--bench-time",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Seconds at least per batch size and candidate.",
)
@click.option(
    "--bench-iterations",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Executions at least per batch size and candidate.",
)
@click.option(
    "--bench-rounds",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Rounds of measuring every candidate in turn; each keeps its fastest.",
)
@click.option(
    "--min-speedup",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Write nothing unless the best passing candidate is at least this much faster.",
)
@click.option("--rollout", "rollout", help="canary:N: start a canary of the new version at N% on --server.")
@click.option("--dry-run", is_flag=True, help="Judge and benchmark, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def optimize_command(
    model_dir: Path,
    samples_path: Path | None,
    from_traffic: bool,
    server: str,
    api_key: str | None,
    max_drop: float,
    min_cosine: float,
    max_abs_error: float | None,
    classifier_output: tuple[str, ...],
    user_candidates: tuple[Path, ...],
    methods: tuple[str, ...],
    source_version: int | None,
    max_samples: int,
    bench_time: float,
    bench_iterations: int,
    bench_rounds: int,
    min_speedup: float,
    rollout: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Build faster versions of MODEL_DIR's served ONNX model, prove them on samples, write the best."""
    canary = _canary_percent(rollout)
    if canary is not None and dry_run:
        raise click.BadParameter("--dry-run writes no version to roll out", param_hint="--rollout")
    if samples_path is None and not from_traffic:
        _fail("no samples: give --samples FILE or --from-traffic (no accuracy claim is made without data)", 2)
    try:
        name = model_name(model_dir.resolve().name)
    except InvalidName as exc:
        _fail(f"{model_dir}: {exc.message}", 2)
    # A polling server is told through config.yaml, before the version appears (config_rollout.py);
    # asked first, so an unreachable server fails the run before anything is written.
    polling = canary is not None and _model_control(server, api_key, name) == "poll"
    announced: list[str | None] = []

    def announce(version: int) -> None:
        assert canary is not None
        announced.append(config_rollout.write_rollout(model_dir, version, canary))

    try:
        version, source_file = _source(model_dir, source_version)
        config = load_model_config(model_dir)
        samples = _samples(samples_path, source_file, config, server, api_key, name)
        plan = Plan(
            model_dir,
            version,
            source_file,
            config,
            Thresholds(max_drop, min_cosine, max_abs_error),
            frozenset(classifier_output),
            user_candidates,
            frozenset(methods),
            bench=BenchSettings(iterations=bench_iterations, min_time_s=bench_time, rounds=bench_rounds),
            min_speedup=min_speedup,
        )
        try:
            result = optimize(
                plan, samples.take(max_samples), write=not dry_run, announce=announce if polling else None
            )
        except BaseException:
            if announced:  # named in config.yaml, then not written after all
                config_rollout.restore(model_dir, announced[0])
            raise
    except config_rollout.ConfigRolloutError as exc:
        _fail(f"{exc}; nothing written")
    except (SampleError, BenchmarkError) as exc:
        _fail(str(exc))
    except InferdError as exc:
        _fail(exc.message)
    _report(result, as_json)
    if result.best is None:
        _fail(f"{result.refusal}; nothing written")
    if result.written_version is not None and canary is not None and polling:
        _await_config_rollout(server, api_key, name, result.written_version, canary, as_json)
    elif result.written_version is not None and canary is not None:
        document = {"candidate": result.written_version, "canary_percent": canary}
        try:
            status = remote.call(server, api_key, "POST", f"/v2/repository/models/{name}/rollout", document)
        except remote.ServerError as exc:
            _fail(f"version {result.written_version} written, but the canary did not start: {exc}")
        click.echo(
            f"canary of version {result.written_version} at {canary:g}% started on {server}", err=as_json
        )
        if not as_json:
            click.echo(json.dumps(status, indent=2))


def _model_control(server: str, api_key: str | None, name: str) -> str:
    """The server's model control mode, read from the model's lifecycle document."""
    try:
        document = remote.call(server, api_key, "GET", f"/v2/repository/models/{name}/lifecycle")
    except remote.ServerError as exc:
        _fail(f"--rollout needs the server serving '{name}': {exc}")
    return str(document.get("model_control", "none")) if isinstance(document, dict) else "none"


def _await_config_rollout(
    server: str, api_key: str | None, name: str, version: int, canary: float, as_json: bool
) -> None:
    """Until the polling server has started the canary config.yaml names (or failed to load it)."""
    deadline = time.monotonic() + _CONFIG_ROLLOUT_WAIT_S
    click.echo(
        f"version {version} written, named in config.yaml as a canary at {canary:g}%: waiting for {server}'s "
        "next repository poll",
        err=True,
    )
    while True:
        try:
            document = remote.call(server, api_key, "GET", f"/v2/repository/models/{name}/lifecycle")
        except remote.ServerError as exc:
            _fail(f"version {version} written and named in config.yaml, but the server is unreachable: {exc}")
        rollout = document.get("rollout") or {}
        if rollout.get("candidate_version") == str(version):
            click.echo(f"canary of version {version} at {canary:g}% started on {server}", err=as_json)
            if not as_json:
                click.echo(json.dumps(document["rollout"], indent=2))
            return
        state = document.get("versions", {}).get(str(version), {})
        if state.get("state") == "failed":
            _fail(f"version {version} written, but the server failed to load it: {state.get('reason')}")
        if time.monotonic() > deadline:
            _fail(
                f"version {version} written and named in config.yaml, but {server} had not started "
                f"its canary after {_CONFIG_ROLLOUT_WAIT_S:g} s (is it polling this repository?)"
            )
        time.sleep(0.2)


def _samples(
    path: Path | None, source_file: Path, config: ModelConfig, server: str, api_key: str | None, name: str
) -> Samples:
    session = sessions.open_session(source_file, config)
    model = sessions.facts(session, config)
    if path is not None:
        return load_samples(path, model.batched)
    shapes = {}
    for spec in session.get_inputs():
        dims = spec.shape[1:] if model.batched else spec.shape
        if not all(isinstance(d, int) for d in dims):
            raise SampleError(
                f"--from-traffic needs fixed input dimensions; input '{spec.name}' has {spec.shape}"
            )
        shapes[spec.name] = tuple(int(d) for d in dims)
    return remote.traffic_samples(server, api_key, name, shapes)


def _report(result: Result, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    plan = result.plan
    click.echo(
        f"{plan.model_dir.name}: version {plan.source_version}, {result.samples.rows} samples from "
        f"{result.samples.origin}, batch sizes {result.batch_sizes}"
    )
    if result.baseline is not None:
        click.echo(table(result.baseline, result.outcomes, result.batch_sizes[-1]))
    else:
        for o in result.outcomes:
            why = o.candidate.skipped or "; ".join(o.verdict.reasons if o.verdict else [])
            click.echo(f"  {o.candidate.name}: {o.status}: {why}")
    if result.written_version is not None and result.best is not None:
        click.echo(
            f"wrote version {result.written_version} ({result.best.candidate.name}, "
            f"{result.best.speedup:.2f}x) with provenance.json"
        )
    elif result.best is not None:
        click.echo(
            f"best: {result.best.candidate.name} ({result.best.speedup:.2f}x); --dry-run: nothing written"
        )
