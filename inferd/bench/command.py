"""The ``inferd bench`` command: flags, scenario choice and output. Flags follow perf_analyzer's names
where the concepts match (-m, -x, -b, -H, --shape, --concurrency-range, --request-rate-range)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inferd.bench.endpoint import BenchError, Endpoint

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

if TYPE_CHECKING:  # the rest loads numpy and friends: imported on use, so `inferd --help` stays fast
    from inferd.bench.scenarios import Bench, Measurement

_SCENARIOS = ("single-stream", "server", "offline", "sweep", "generative")


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("url")
@click.option("-m", "--model-name", "model", required=True, help="Model to load.")
@click.option("-x", "--model-version", "version", default="", help="Model version (default: the server's).")
@click.option(
    "--scenario", type=click.Choice(_SCENARIOS), help="Default: from the other flags, else single-stream."
)
@click.option(
    "--concurrency", "--concurrency-range", "concurrency", help="Closed-loop levels: 1,8,64 or 1:64:8."
)
@click.option(
    "--rate", "--request-rate-range", "rate", help="Server-scenario arrival rates per second: 100,200."
)
@click.option(
    "-b", "--batch-size", type=click.IntRange(min=1), help="Rows per request (default 1; offline 32)."
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Measured seconds per run.",
)
@click.option(
    "-p",
    "--measurement-interval",
    type=click.IntRange(min=100),
    help="perf_analyzer's form of --duration, in milliseconds (overrides it).",
)
@click.option(
    "-i",
    "--protocol",
    type=click.Choice(["http", "grpc"]),
    help="perf_analyzer's -i: the protocol for a URL given as host:port (default http).",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds of load before measuring.",
)
@click.option(
    "--drain",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for answers after a run; later ones count as 'no answer'.",
)
@click.option("--shape", multiple=True, help="NAME:D1,D2 for dynamic dims (without the batch dim).")
@click.option("--input-data", default="random", show_default=True, help="random, zero, or a .json/.npz file.")
@click.option(
    "--encoding",
    type=click.Choice(["binary", "json"]),
    default="binary",
    show_default=True,
    help="REST body: JSON with binary tensors (binary-data extension) or plain JSON.",
)
@click.option(
    "--slo-p99-ms",
    type=click.FloatRange(min=0, min_open=True),
    help="Search the highest rate whose latency percentile stays under this many ms.",
)
@click.option(
    "--slo-percentile", type=click.FloatRange(0, 100, min_open=True), default=99.0, show_default=True
)
@click.option(
    "--slo-tolerance",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Stop bisecting when the rate bracket is this close.",
)
@click.option(
    "--goodput-ms",
    type=click.FloatRange(0, min_open=True),
    help="Also report goodput: answers within this many ms, per second (JSON: goodput_per_s).",
)
@click.option(
    "--price-per-hour", type=float, help="USD per hour of the machine, for cost per 1,000 inferences."
)
@click.option(
    "--instance-type", help="Take the price from the table of on-demand prices (see docs/bench.md)."
)
@click.option("--json", "json_path", help="Write the results as JSON to this file ('-' for stdout).")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a latency-vs-throughput PNG (needs matplotlib).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Generator processes sharing the load.",
)
@click.option(
    "--max-outstanding",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Open loop: requests in flight beyond this fail as not sent.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for inputs and the Poisson schedule."
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option(
    "-H",
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Send this header on every call (REST header, gRPC metadata); repeatable.",
)
@click.option(
    "--api-key",
    envvar="INFERD_API_KEY",
    help="Send 'Authorization: Bearer KEY' (inferd's API keys); default: $INFERD_API_KEY.",
)
@click.option(
    "--ssl-ca-file",
    "--ssl-https-ca-certificates-file",
    "--ssl-grpc-root-certifications-file",
    "ssl_ca_file",
    type=_FILE,
    help="https/grpcs: trust this PEM CA (default: the system's trusted CAs).",
)
@click.option(
    "--ssl-cert-file",
    "--ssl-https-client-certificate-file",
    "--ssl-grpc-certificate-chain-file",
    "ssl_cert_file",
    type=_FILE,
    help="https/grpcs: client certificate (PEM) for mutual TLS; needs --ssl-key-file.",
)
@click.option(
    "--ssl-key-file",
    "--ssl-https-private-key-file",
    "--ssl-grpc-private-key-file",
    "ssl_key_file",
    type=_FILE,
    help="https/grpcs: the client certificate's private key (PEM, unencrypted).",
)
@click.option(
    "--api",
    type=click.Choice(["generate", "openai"]),
    help="Generative: stream /v2/models/M/generate_stream (default) or /v1/completions.",
)
@click.option(
    "--prompts", type=_FILE, help="Generative: prompts, one per line (.txt) or JSON lines (.jsonl)."
)
@click.option(
    "--max-tokens", type=click.IntRange(min=1), help="Generative: tokens per request (default 128)."
)
@click.option(
    "--temperature", type=click.FloatRange(min=0), help="Generative: sampling temperature (default 0)."
)
def bench(url: str, model: str, version: str, **flags: Any) -> None:
    """Load an Open Inference Protocol server at URL (http://, https://, grpc:// or grpcs://host:port)
    and report latency percentiles, throughput, errors, the server's queue/compute split and cost."""
    try:
        _bench(url, model, version, flags)
    except (BenchError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _bench(url: str, model: str, version: str, flags: dict[str, Any]) -> None:
    from inferd.bench.cost import hourly_price
    from inferd.bench.endpoint import model_metadata
    from inferd.bench.inputs import batch_rows, load_inputs, parse_shapes, random_inputs
    from inferd.bench.payloads import grpc_payload, rest_payload
    from inferd.bench.runner import LoadSpec, probe
    from inferd.bench.scenarios import Bench

    # gRPC's core logs failed TLS handshakes to stderr itself; bench reports them in one line instead.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if importlib.util.find_spec("rich") is None:
        raise BenchError("inferd bench needs rich for its report: pip install 'inferd[bench]'")
    if flags["protocol"] is not None:
        if "://" in url and Endpoint.parse(url).protocol != flags["protocol"]:
            raise BenchError(f"-i {flags['protocol']} contradicts the URL {url}")
        url = url if "://" in url else f"{flags['protocol']}://{url}"
    if flags["measurement_interval"] is not None:
        flags["duration"] = flags["measurement_interval"] / 1000
    endpoint = _secured(Endpoint.parse(url), flags)
    if flags["plot_path"] and importlib.util.find_spec("matplotlib") is None:
        raise BenchError("--plot needs matplotlib: pip install 'inferd[plot]'")  # say so before the runs
    scenario = _scenario(flags)
    if scenario == "generative":
        from inferd.bench.generative_command import run_command

        run_command(endpoint, url, model, version, flags)
        return
    price = hourly_price(flags["price_per_hour"], flags["instance_type"])
    from inferd.bench.scenarios import parse_levels

    for name, kind in (("concurrency", int), ("rate", float)):  # bad lists fail before any request
        if flags[name]:
            parse_levels(flags[name], kind)
    batch_size = flags["batch_size"] or (32 if scenario == "offline" else 1)
    metadata = model_metadata(endpoint, model, version)
    stats_note = _statistics_note(endpoint, model, version)
    source = flags["input_data"]
    if source in ("random", "zero"):
        tensors = random_inputs(
            metadata, batch_size, parse_shapes(flags["shape"]), flags["seed"], source == "zero"
        )
    else:
        if flags["shape"] or flags["batch_size"]:
            raise BenchError("--shape and --batch-size do not apply to inputs read from a file")
        tensors = load_inputs(Path(source), metadata)
    spec = LoadSpec(
        endpoint=endpoint,
        model=model,
        version=version,
        rest_payload=rest_payload(tensors, flags["encoding"]) if endpoint.protocol == "http" else None,
        grpc_payload=grpc_payload(tensors, model, version) if endpoint.protocol == "grpc" else None,
        mode="closed",
        warmup_s=flags["warmup"],
        duration_s=flags["duration"],
        drain_s=flags["drain"],
        max_outstanding=flags["max_outstanding"],
        seed=flags["seed"],
    )
    failure = probe(spec)
    if failure is not None:
        raise BenchError(f"the benchmark request to '{model}' failed, so nothing was measured: {failure}")

    json_to_stdout = flags["json_path"] == "-"
    show_progress = flags["progress"] if flags["progress"] is not None else sys.stderr.isatty()
    from inferd.bench.progress import Progress

    with Progress(enabled=show_progress) as progress:
        runner = Bench(spec, batch_rows(tensors, metadata), flags["processes"], progress.step)
        document: dict[str, Any] = {
            "url": url,
            "protocol": endpoint.protocol,
            "encoding": flags["encoding"] if endpoint.protocol == "http" else "grpc",
            "model": model,
            "version": version,
            "scenario": scenario,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in tensors],
            "price_per_hour_usd": price,
        }
        measurements, slo = _run_scenario(runner, scenario, flags)

    from inferd.bench.report import measurement_document, slo_document

    goodput_s = flags["goodput_ms"] / 1e3 if flags["goodput_ms"] else None
    document["runs"] = [measurement_document(m, price, goodput_s) for m in measurements]
    if slo is not None:
        document["slo_search"] = slo_document(slo, price)
    if not json_to_stdout:
        _print_report(document, measurements, slo, price, f"{model} @ {url} ({scenario})")
    if stats_note:
        click.echo(f"note: {stats_note}", err=True)
    if flags["json_path"]:
        text = json.dumps(_finite(document), indent=2, allow_nan=False)
        if json_to_stdout:
            click.echo(text)
        else:
            Path(flags["json_path"]).write_text(text + "\n")
    if flags["plot_path"]:
        from inferd.bench.plot import plot_latency_throughput

        plot_latency_throughput(measurements, flags["plot_path"], f"{model} ({endpoint.protocol})")


def _secured(endpoint: Endpoint, flags: dict[str, Any]) -> Endpoint:
    """The endpoint with the -H/--api-key headers and, for https/grpcs, the --ssl-* files."""
    from dataclasses import replace

    from inferd.bench.credentials import ClientTls, request_headers

    headers = request_headers(flags["headers"], flags["api_key"])
    files = (flags["ssl_ca_file"], flags["ssl_cert_file"], flags["ssl_key_file"])
    if endpoint.tls is None:
        if any(f is not None for f in files):
            raise BenchError(f"the --ssl-* files need an https:// or grpcs:// URL, not {endpoint.base_url}")
        return replace(endpoint, headers=headers)
    tls = ClientTls(*files)
    tls.check()
    return replace(endpoint, tls=tls, headers=headers)


def _statistics_note(endpoint: Endpoint, model: str, version: str) -> str | None:
    """Why the server column will be empty when the server refuses bench's statistics calls."""
    from inferd.bench.endpoint import ServerRefused, fetch_model_statistics

    try:
        fetch_model_statistics(endpoint, model, version)
    except ServerRefused as exc:
        if exc.unauthorized:
            return (
                f"the server refused its statistics ({exc.status}), so the server column is empty; "
                "an inferd key needs the 'metrics' API for them"
            )
    except BenchError:
        pass  # servers without the statistics extension: the column shows '-' as it always has
    return None


def _scenario(flags: dict[str, Any]) -> str:
    chosen: str | None = flags["scenario"]
    from inferd.bench.generative_command import wants_generative

    if chosen == "generative" or (chosen is None and wants_generative(flags)):
        return "generative"
    if wants_generative(flags):
        raise BenchError("--api, --prompts and --max-tokens belong to the generative scenario")
    if flags["slo_p99_ms"] is not None:
        if chosen not in (None, "server"):
            raise BenchError("--slo-p99-ms searches the server scenario; drop --scenario or use server")
        return "slo-search"
    if chosen is not None:
        return chosen
    if flags["concurrency"]:
        return "sweep"
    return "server" if flags["rate"] else "single-stream"


def _run_scenario(runner: Bench, scenario: str, flags: dict[str, Any]) -> tuple[list[Measurement], Any]:
    from inferd.bench.scenarios import parse_levels

    concurrency = parse_levels(flags["concurrency"], int) if flags["concurrency"] else None
    rates = parse_levels(flags["rate"], float) if flags["rate"] else None
    if scenario == "single-stream":
        return runner.single_stream(), None
    if scenario == "server":
        if rates is None:
            raise BenchError("the server scenario needs --rate (arrivals per second), or --slo-p99-ms")
        return runner.server(rates), None
    if scenario == "offline":
        if concurrency is not None and len(concurrency) != 1:
            raise BenchError("offline takes one --concurrency (the number of batch streams)")
        return runner.offline(concurrency[0] if concurrency else 2), None
    if scenario == "sweep":
        return list(runner.sweep(concurrency or [1, 2, 4, 8, 16, 32, 64])), None
    start = rates[0] if rates else None
    found = runner.slo_search(
        flags["slo_p99_ms"] / 1e3, flags["slo_percentile"], start, tolerance=flags["slo_tolerance"]
    )
    return [p.detail for p in found.probes], found


def _print_report(
    document: dict[str, Any], measurements: list[Measurement], slo: Any, price: float | None, title: str
) -> None:
    from rich.console import Console

    from inferd.bench.report import cpu_note, error_notes, render_table, slo_lines

    # Off a terminal rich assumes 80 columns, too narrow for the table: let it be as wide as it needs.
    console = Console(width=None if sys.stdout.isatty() else 220)
    console.print(render_table(measurements, price, title))
    for line in error_notes(measurements):
        console.print(f"[red]error[/red] {line}", highlight=False)
    note = cpu_note(measurements)
    if note:
        console.print(f"[yellow]note[/yellow] {note}", highlight=False)
    if slo is not None:
        outcome, warnings = slo_lines(slo)
        console.print(outcome, highlight=False)
        for line in warnings:
            console.print(f"[yellow]warning[/yellow] {line}", highlight=False)


def _finite(value: Any) -> Any:
    """NaN and infinity are not JSON: write null (e.g. the latency of a run with no successes)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
