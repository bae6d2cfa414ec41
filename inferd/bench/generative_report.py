"""The generative scenario's figures: time to first token, inter-token latency, tokens/s, requests/s.

- TTFT: from a request's scheduled time to its first token event, over the requests scheduled in the
  window that completed.
- Inter-token latency: every gap between two successive token events of those requests (tokens that
  arrive in one read have a gap of 0: the client saw them together).
- Output tokens/s: token events that arrived in the window, divided by its length, whichever request
  they belong to (a stream that started in the warm-up still produces inside the window).
- Requests/s: requests whose last event arrived in the window.
Percentiles use the nearest-rank rule, like the other scenarios.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferd.bench.generative import GenerativeResult, GenerativeSpec, count_errors
from inferd.bench.percentiles import percentile

_PERCENTILES = (50.0, 90.0, 99.0)


@dataclass(frozen=True, slots=True)
class GenerativeSummary:
    label: str
    concurrency: int | None
    offered_rate: float | None
    window_s: float
    requests: int  # scheduled in the window
    completed: int  # of those, finished without error
    requests_per_s: float
    output_tokens_per_s: float
    tokens_per_request: float
    ttft_s: dict[float, float]
    inter_token_s: dict[float, float]
    latency_s: dict[float, float]  # the whole stream, scheduled time to last event
    errors: dict[str, int]
    error_samples: dict[str, str]
    generator_cpu: float  # cores the generator used on average

    @property
    def ttft_p99_s(self) -> float:
        return self.ttft_s[99.0]


def _percentiles(values: list[float]) -> dict[float, float]:
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    return {p: percentile(ordered, p) for p in _PERCENTILES}


def summarize(spec: GenerativeSpec, result: GenerativeResult) -> GenerativeSummary:
    start, end = result.window
    window = end - start
    in_window = [r for r in result.records if start <= r.scheduled < end]
    ok = [r for r in in_window if r.ok and r.token_times]
    gaps: list[float] = []
    for record in ok:
        gaps.extend(np.diff(record.token_times).tolist())
    tokens = sum(1 for r in result.records for t in r.token_times if start <= t < end)
    finished = sum(1 for r in result.records if r.ok and r.token_times and start <= r.token_times[-1] < end)
    closed = spec.mode == "closed"
    return GenerativeSummary(
        label=f"c={spec.concurrency}" if closed else f"{spec.rate:g}/s",
        concurrency=spec.concurrency if closed else None,
        offered_rate=None if closed else spec.rate,
        window_s=window,
        requests=len(in_window),
        completed=len(ok),
        requests_per_s=finished / window,
        output_tokens_per_s=tokens / window,
        tokens_per_request=float(np.mean([len(r.token_times) for r in ok])) if ok else math.nan,
        ttft_s=_percentiles([r.token_times[0] - r.scheduled for r in ok]),
        inter_token_s=_percentiles(gaps),
        latency_s=_percentiles([r.token_times[-1] - r.scheduled for r in ok]),
        errors=count_errors(in_window),
        error_samples=result.error_samples,
        generator_cpu=result.generator_cpu_s / result.generator_wall_s if result.generator_wall_s else 0.0,
    )


def _ms(values: dict[float, float]) -> dict[str, float]:
    return {f"p{p:g}": v * 1e3 for p, v in values.items()}


def summary_document(summary: GenerativeSummary) -> dict[str, Any]:
    return {
        "scenario": "generative",
        "label": summary.label,
        "concurrency": summary.concurrency,
        "offered_rate": summary.offered_rate,
        "window_s": summary.window_s,
        "requests": summary.requests,
        "requests_ok": summary.completed,
        "requests_per_s": summary.requests_per_s,
        "output_tokens_per_s": summary.output_tokens_per_s,
        "tokens_per_request": summary.tokens_per_request,
        "ttft_ms": _ms(summary.ttft_s),
        "inter_token_ms": _ms(summary.inter_token_s),
        "latency_ms": _ms(summary.latency_s),
        "errors": summary.errors,
        "error_samples": summary.error_samples,
        "generator_cpu_cores": summary.generator_cpu,
    }


def _fmt(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.1f}"


def render_generative_table(summaries: list[GenerativeSummary], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("run")
    for header in (
        "req/s",
        "out tok/s",
        "tok/req",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "ITL p50 ms",
        "ITL p99 ms",
        "e2e p99 ms",
        "ok",
        "errors",
        "gen CPU",
    ):
        table.add_column(header, justify="right")
    for s in summaries:
        table.add_row(
            s.label,
            f"{s.requests_per_s:.2f}",
            f"{s.output_tokens_per_s:.1f}",
            "-" if math.isnan(s.tokens_per_request) else f"{s.tokens_per_request:.1f}",
            _fmt(s.ttft_s[50.0]),
            _fmt(s.ttft_s[99.0]),
            _fmt(s.inter_token_s[50.0]),
            _fmt(s.inter_token_s[99.0]),
            _fmt(s.latency_s[99.0]),
            str(s.completed),
            ", ".join(f"{n} {kind}" for kind, n in sorted(s.errors.items())) or "0",
            f"{s.generator_cpu * 100:.0f}%",
        )
    return table
