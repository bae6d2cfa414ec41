"""``inferd bench --scenario generative``: the flags, the runs and the report of the generative scenario."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from inferd.bench.endpoint import BenchError, Endpoint

# Flags of the tensor scenarios that mean nothing here: refused rather than silently ignored.
_NOT_HERE = {
    "batch_size": "--batch-size",
    "slo_p99_ms": "--slo-p99-ms",
    "price_per_hour": "--price-per-hour",
    "instance_type": "--instance-type",
    "plot_path": "--plot",
}


def wants_generative(flags: dict[str, Any]) -> bool:
    """The generative flags imply the scenario when --scenario is not given."""
    return any(flags.get(name) is not None for name in ("api", "prompts", "max_tokens"))


def run_command(endpoint: Endpoint, url: str, model: str, version: str, flags: dict[str, Any]) -> None:
    from inferd.bench.generative import Api, GenerativeSpec, check_rest, probe_generative, run_generative
    from inferd.bench.generative_report import render_generative_table, summarize, summary_document
    from inferd.bench.prompts import BUILTIN_PROMPTS, load_prompts
    from inferd.bench.scenarios import parse_levels

    check_rest(endpoint)
    given = [flag for name, flag in _NOT_HERE.items() if flags.get(name) is not None]
    given += ["--shape"] if flags.get("shape") else []
    given += ["--input-data"] if flags.get("input_data") not in (None, "random") else []
    given += ["--processes"] if (flags.get("processes") or 1) > 1 else []
    if given:
        raise BenchError(f"{', '.join(given)} do(es) not apply to the generative scenario")
    concurrency = parse_levels(flags["concurrency"], int) if flags.get("concurrency") else None
    rates = parse_levels(flags["rate"], float) if flags.get("rate") else None
    if concurrency and rates:
        raise BenchError(
            "the generative scenario takes --concurrency (closed loop) or --rate (Poisson), not both"
        )
    prompts = load_prompts(flags["prompts"]) if flags.get("prompts") else BUILTIN_PROMPTS
    api: Api = flags.get("api") or "generate"
    spec = GenerativeSpec(
        endpoint=endpoint,
        model=model,
        version=version,
        api=api,
        prompts=prompts,
        max_tokens=flags.get("max_tokens") or 128,
        temperature=flags.get("temperature") or 0.0,
        warmup_s=flags["warmup"],
        duration_s=flags["duration"],
        drain_s=flags["drain"],
        max_outstanding=flags["max_outstanding"],
        seed=flags["seed"],
    )
    if api == "openai" and version:
        raise BenchError("the OpenAI API names no version: drop -x with --api openai")
    failure = probe_generative(spec)
    if failure is not None:
        raise BenchError(f"the benchmark stream from '{model}' failed, so nothing was measured: {failure}")
    specs = (
        [replace(spec, mode="open", rate=rate) for rate in rates]
        if rates
        else [replace(spec, mode="closed", concurrency=c) for c in (concurrency or [1])]
    )
    from inferd.bench.progress import Progress

    show_progress = flags["progress"] if flags["progress"] is not None else sys.stderr.isatty()
    summaries = []
    with Progress(enabled=show_progress) as progress:
        for one in specs:
            label = (
                f"generative c={one.concurrency}" if one.mode == "closed" else f"generative {one.rate:g}/s"
            )
            with progress.step(label, one.warmup_s + one.duration_s):
                summaries.append(summarize(one, run_generative(one)))
    document = {
        "url": url,
        "protocol": "http",
        "api": api,
        "model": model,
        "version": version,
        "scenario": "generative",
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
        "prompts": len(prompts),
        "runs": [summary_document(s) for s in summaries],
    }
    json_path = flags.get("json_path")
    if json_path != "-":
        from rich.console import Console

        console = Console(width=None if sys.stdout.isatty() else 220)
        title = f"{model} @ {url} (generative, {api}, max_tokens {spec.max_tokens})"
        console.print(render_generative_table(summaries, title))
        samples: dict[str, str] = {}
        for s in summaries:
            for kind, text in s.error_samples.items():
                samples.setdefault(kind, text)
        for kind, text in sorted(samples.items()):
            console.print(f"[red]error[/red] {kind}: {text}", highlight=False)
    if json_path:
        from inferd.bench.command import _finite

        text = json.dumps(_finite(document), indent=2, allow_nan=False)
        if json_path == "-":
            click.echo(text)
        else:
            Path(json_path).write_text(text + "\n")
