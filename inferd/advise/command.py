"""``inferd advise MODEL_DIR --slo-p99-ms MS --rate R``: measure, search, print the config to use."""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from inferd.advise.measure import Sessions, random_feeder
from inferd.advise.search import Advice, Config, layouts, search
from inferd.bench.cost import cost_per_1000
from inferd.errors import InferdError
from inferd.model_config import CONFIG_FILE, ModelConfig, available_cores, load_model_config
from inferd.repository.provenance import PROVENANCE_FILE
from inferd.repository.source import scan_model


def _fail(message: str) -> NoReturn:
    click.echo(f"inferd advise: {message}", err=True)
    sys.exit(1)


def _versions(model_dir: Path, config: ModelConfig) -> tuple[int, dict[int, Path]]:
    """The served version and the ones worth measuring: it and every version optimize wrote."""
    source = scan_model(model_dir)
    onnx_versions = {
        v: p for v, p in (source.versions if source else {}).items() if p.name == "model.onnx" and p.is_file()
    }
    served = config.version_policy.select(list(onnx_versions))
    if not served:
        _fail(f"{model_dir}: no served ONNX version (model.onnx) to measure")
    chosen = {
        v: p for v, p in onnx_versions.items() if v == served[-1] or (p.parent / PROVENANCE_FILE).is_file()
    }
    return served[-1], chosen


def advised_config(base: ModelConfig, config: Config, served: int) -> dict[str, Any]:
    """The model's config.yaml with the advised keys set (everything else kept as it was)."""
    document = base.model_dump(mode="json", exclude_defaults=True, exclude={"inferred"})
    layout = config.layout
    document["max_batch_size"] = config.batch_cap
    document["dynamic_batching"] = {**document.get("dynamic_batching", {}), "max_queue_delay_ms": 0}
    document["instances"] = layout.instances
    document["onnxruntime"] = {
        **document.get("onnxruntime", {}),
        "intra_op_threads": layout.threads,
        "inter_op_threads": 1,
    }
    if layout.version != served:
        document["rollout"] = {"candidate": layout.version, "canary_percent": 10}
    return document


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--slo-p99-ms", type=click.FloatRange(0, min_open=True), required=True, help="The p99 target.")
@click.option(
    "--rate", type=click.FloatRange(0, min_open=True), required=True, help="Inferences/s to serve in all."
)
@click.option(
    "--price-per-hour", type=click.FloatRange(0), help="This machine's price (USD/hour), for cost per 1,000."
)
@click.option(
    "--max-batch", type=click.IntRange(1, 4096), help="Largest batch cap tried (default: the model's, or 64)."
)
@click.option(
    "--cores", type=click.IntRange(1), help="Cores to plan for (default: those this process may use)."
)
@click.option(
    "--write", is_flag=True, help="Write the advice into config.yaml (old one kept as a .bak file)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
def advise_command(
    model_dir: Path,
    slo_p99_ms: float,
    rate: float,
    price_per_hour: float | None,
    max_batch: int | None,
    cores: int | None,
    write: bool,
    as_json: bool,
) -> None:
    """Measure configurations of MODEL_DIR on this machine and print the cheapest that holds the SLO."""
    try:
        base = load_model_config(model_dir)
    except InferdError as exc:
        _fail(exc.message)
    served, files = _versions(model_dir, base)
    cap = max_batch or base.max_batch_size or 64
    started = time.perf_counter()
    sessions = Sessions(files, random_feeder(files[served]), slo_s=slo_p99_ms / 1e3)
    advice = search(
        layouts(sorted(files), cores or available_cores()),
        cap,
        slo_p99_ms / 1e3,
        sessions.probe,
        sessions.verify,
    )
    elapsed = time.perf_counter() - started
    document = _document(advice, base, served, rate, price_per_hour, elapsed)
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        _print(document)
    if advice.best is None:
        _fail(advice.problem)
    if write:
        path = model_dir / CONFIG_FILE
        if path.exists():
            path.rename(path.with_name(f"{CONFIG_FILE}.bak-{datetime.now(UTC):%Y%m%dT%H%M%S}"))
        path.write_text(yaml.safe_dump(document["config"], sort_keys=False))
        click.echo(f"wrote {path}", err=as_json)


def _document(
    advice: Advice, base: ModelConfig, served: int, rate: float, price: float | None, elapsed: float
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "probes": advice.probes,
        "verifications": advice.verifications,
        "search_s": round(elapsed, 2),
        "predictions": [
            {
                "version": p.config.layout.version,
                "instances": p.config.layout.instances,
                "threads": p.config.layout.threads,
                "batch_cap": p.config.batch_cap,
                "throughput": round(p.throughput, 1),
                "p99_ms": round(p.p99_s * 1e3, 3),
            }
            for p in advice.predictions[:10]
        ],
        # Every configuration measured under load, with the highest rate that held the p99 (null: none).
        "verified": [
            {
                "version": c.layout.version,
                "instances": c.layout.instances,
                "threads": c.layout.threads,
                "batch_cap": c.batch_cap,
                "throughput": round(v.throughput, 1) if v else None,
            }
            for c, v in advice.tried.items()
        ],
        "problem": advice.problem or None,
    }
    if advice.best is None or advice.verified is None or advice.predicted is None:
        return document
    throughput = advice.verified.throughput
    document |= {
        "config": advised_config(base, advice.best, served),
        "predicted": {
            "throughput": round(advice.predicted.throughput, 1),
            "p99_ms": round(advice.predicted.p99_s * 1e3, 3),
        },
        "measured": {"throughput": round(throughput, 1), "p99_ms": round(advice.verified.p99_s * 1e3, 3)},
        "machines": math.ceil(rate / throughput),
        "cost_per_1000": cost_per_1000(price, throughput) if price is not None else None,
    }
    return document


def _print(document: dict[str, Any]) -> None:
    click.echo(
        f"searched in {document['search_s']} s: {document['probes']} probes, "
        f"{document['verifications']} verification(s)"
    )
    for p in document["predictions"][:5]:
        click.echo(
            f"  predicted: version {p['version']}, {p['instances']} x {p['threads']} threads, "
            f"batch cap {p['batch_cap']}: {p['throughput']:.0f}/s at p99 {p['p99_ms']} ms"
        )
    for v in document["verified"]:
        held = (
            f"held p99 up to {v['throughput']:.0f}/s"
            if v["throughput"]
            else "missed the p99 at every rate tried"
        )
        click.echo(
            f"  measured:  version {v['version']}, {v['instances']} x {v['threads']} threads, "
            f"batch cap {v['batch_cap']}: {held}"
        )
    if "config" not in document:
        return
    measured = document["measured"]
    click.echo("config.yaml:")
    click.echo(yaml.safe_dump(document["config"], sort_keys=False).rstrip())
    click.echo(
        f"measured: {measured['throughput']:.0f} inferences/s at p99 {measured['p99_ms']} ms "
        "(queue + execution in process; add the network with inferd bench)"
    )
    click.echo(f"machines for the rate: {document['machines']}")
    if document["cost_per_1000"] is not None:
        click.echo(f"cost per 1,000 inferences: ${document['cost_per_1000']:.3g}")
