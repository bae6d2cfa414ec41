"""Present measurements: a rich table for people, a JSON document for machines."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferd.bench.cost import cost_per_1000
from inferd.bench.percentiles import REPORTED, LatencySummary, percentile
from inferd.bench.scenarios import Measurement
from inferd.bench.slo import SloSearch
from inferd.bench.slo_checks import achieved_rate, judge, rate_achieved, send_lag_p99_s


def _ms(seconds: float) -> str:
    return (
        "-" if math.isnan(seconds) else f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.2f}"
    )


def _p_label(p: float) -> str:
    return f"p{p:g}"


def measurement_document(
    m: Measurement, price_per_hour: float | None, goodput_within_s: float | None = None
) -> dict[str, Any]:
    latency = m.latency
    result = m.result
    lag = np.sort(result.send_lag_s)
    document: dict[str, Any] = {
        "scenario": m.scenario,
        "label": m.label,
        "concurrency": m.concurrency,
        "offered_rate": m.offered_rate,
        "rows_per_request": m.rows_per_request,
        "window_s": result.window_s,
        "requests_sent": result.sent,
        "requests_ok": latency.count,
        "requests_per_s": m.requests_per_s,
        "inferences_per_s": m.inferences_per_s,
        "latency_ms": {
            "mean": latency.mean * 1e3,
            "min": latency.minimum * 1e3,
            **{_p_label(p): v * 1e3 for p, v in latency.percentiles.items()},
            "max": latency.maximum * 1e3,
        },
        "errors": result.errors,
        "error_samples": result.error_samples,
        "generator": {
            "processes": result.processes,
            "cpu_s": result.generator_cpu_s,
            "wall_s": result.generator_wall_s,
            "cpu_cores": result.generator_cpu_s / result.generator_wall_s if result.generator_wall_s else 0.0,
            # How late the open loop sent against its schedule: large values mean the generator lagged.
            "send_lag_ms": (
                {"p50": percentile(lag, 50) * 1e3, "p99": percentile(lag, 99) * 1e3} if len(lag) else None
            ),
        },
        "server": None,
        "cost_per_1000_inferences_usd": (
            cost_per_1000(price_per_hour, m.inferences_per_s) if price_per_hour is not None else None
        ),
    }
    if goodput_within_s is not None:
        # Answers (successes) within the target, per second of the window: what a user got in time.
        met = int(np.count_nonzero(result.latencies_s <= goodput_within_s))
        document["goodput_within_ms"] = goodput_within_s * 1e3
        document["goodput_per_s"] = met / result.window_s if result.window_s > 0 else 0.0
    if m.server is not None:
        document["server"] = {
            "requests": m.server.requests,
            "mean_ms": m.server.total_s * 1e3,
            "queue_ms": m.server.queue_s * 1e3,
            "compute_ms": m.server.compute_s * 1e3,
            "mean_batch": m.server.mean_batch,
        }
    return document


def slo_document(found: SloSearch[Measurement], price_per_hour: float | None) -> dict[str, Any]:
    best = found.best
    verdict = judge(found)
    return {
        "slo_ms": found.slo_s * 1e3,
        "percentile": found.percentile,
        "max_rate": best.rate if best else None,
        "goodput": best.goodput if best else None,
        # False when the probes show max_rate is not the server's limit; warnings say why.
        "trustworthy": verdict.trustworthy,
        "warnings": verdict.warnings,
        "probes": [
            {
                "rate": p.rate,
                "latency_ms": p.latency_s * 1e3,
                "goodput": p.goodput,
                "passed": found.passes(p),
                "achieved_rate": achieved_rate(p.detail),
                "rate_achieved": rate_achieved(p.detail),
                "requests": p.detail.result.sent,
                "send_lag_p99_ms": _optional_ms(send_lag_p99_s(p.detail)),
            }
            for p in found.probes
        ],
        "best": measurement_document(best.detail, price_per_hour) if best else None,
    }


def slo_lines(found: SloSearch[Measurement]) -> tuple[str, list[str]]:
    """The search's one-line outcome, and warnings to print after it."""
    verdict = judge(found)
    best = found.best
    target = f"p{found.percentile:g} <= {found.slo_s * 1e3:g} ms"
    if best is None:
        lowest = min(p.rate for p in found.probes)
        return f"SLO {target}: no probed rate met it (lowest tried {lowest:.1f}/s)", verdict.warnings
    if not verdict.trustworthy:
        return (
            f"SLO {target}: no trustworthy maximum rate; the highest probe that passed, {best.rate:.1f}/s, "
            "is not the server's limit (see the warnings)",
            verdict.warnings,
        )
    return (
        f"SLO {target}: max rate {best.rate:.1f} req/s (p{found.percentile:g} {best.latency_s * 1e3:.2f} ms, "
        f"goodput {best.goodput:.1f} req/s, {len(found.probes)} probes)",
        verdict.warnings,
    )


def _optional_ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def render_table(measurements: Sequence[Measurement], price_per_hour: float | None, title: str) -> Any:
    """A rich Table: one row per measurement, latencies in milliseconds."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("run")
    for header in ("offered/s", "req/s", "infer/s"):
        table.add_column(header, justify="right")
    for p in REPORTED:
        table.add_column(f"{_p_label(p)} ms", justify="right")
    table.add_column("max ms", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("server queue / compute ms", justify="right")
    table.add_column("gen CPU", justify="right")
    # Open loop only: how late the generator sent against the schedule (its own stalls show up here).
    table.add_column("send lag p99 ms", justify="right")
    if price_per_hour is not None:
        table.add_column("$ / 1k inf", justify="right")
    for m in measurements:
        latency: LatencySummary = m.latency
        result = m.result
        cpu = result.generator_cpu_s / result.generator_wall_s if result.generator_wall_s else 0.0
        server = (
            f"{m.server.queue_s * 1e3:.3f} / {m.server.compute_s * 1e3:.3f}" if m.server is not None else "-"
        )
        row = [
            m.label,
            f"{m.offered_rate:.0f}" if m.offered_rate is not None else "-",
            f"{m.requests_per_s:.1f}",
            f"{m.inferences_per_s:.1f}",
            *(_ms(latency.percentiles[p]) for p in REPORTED),
            _ms(latency.maximum),
            ", ".join(f"{n} {kind}" for kind, n in sorted(result.errors.items())) or "0",
            server,
            f"{cpu * 100:.0f}%",
            _ms(percentile(np.sort(result.send_lag_s), 99)) if len(result.send_lag_s) else "-",
        ]
        if price_per_hour is not None:
            row.append(f"{cost_per_1000(price_per_hour, m.inferences_per_s):.3g}")
        table.add_row(*row)
    return table


def error_notes(measurements: Sequence[Measurement]) -> list[str]:
    """One line per error kind with the first message the server sent for it."""
    seen: dict[str, str] = {}
    for m in measurements:
        for kind, text in m.result.error_samples.items():
            seen.setdefault(kind, text)
    return [f"{kind}: {text}" for kind, text in sorted(seen.items())]


def cpu_note(measurements: Sequence[Measurement]) -> str | None:
    """A warning when the generator itself may have limited the result."""
    cores = os.cpu_count() or 1
    busiest = max(
        (
            m.result.generator_cpu_s / m.result.generator_wall_s / m.result.processes
            for m in measurements
            if m.result.generator_wall_s
        ),
        default=0.0,
    )
    if busiest > 0.85:
        return (
            f"the generator used {busiest * 100:.0f}% of a core per process: it may be the bottleneck; "
            f"try --processes 2 (this machine has {cores} cores)"
        )
    return None
