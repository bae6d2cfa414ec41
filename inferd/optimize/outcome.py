"""One candidate's result (gate, benchmark, speed-up) and the run's report: a table and a JSON document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferd.optimize.benchmark import BenchFigures
from inferd.optimize.candidates import Candidate
from inferd.optimize.gate import Verdict


@dataclass(slots=True)
class Outcome:
    candidate: Candidate
    verdict: Verdict | None = None
    bench: BenchFigures | None = None
    speedup: float | None = None
    # Why a passing candidate got no benchmark figures (its benchmark failed).
    problem: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict is not None and self.verdict.passed and self.bench is not None

    @property
    def status(self) -> str:
        if self.candidate.skipped:
            return "skipped"
        if self.verdict is None or not self.verdict.passed:
            return "failed gate"
        return "passed" if self.bench is not None else "bench failed"

    def gate_summary(self) -> dict[str, float | None]:
        v = self.verdict
        return {
            "min_mean_cosine": v.worst("mean_cosine") if v else None,
            "min_cosine": v.worst("min_cosine") if v else None,
            "max_abs_error": v.worst("max_abs_error") if v else None,
            "min_top1_agreement": v.worst("top1_agreement") if v else None,
        }

    def as_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "name": c.name,
            "method": c.method,
            "status": self.status,
            "skipped": c.skipped or None,
            "gate": self.verdict.as_dict() if self.verdict else None,
            "gate_summary": self.gate_summary() if self.verdict else None,
            "reasons": self.verdict.reasons if self.verdict else [],
            "benchmark": self.bench.as_dict() if self.bench else None,
            "speedup": self.speedup,
            "problem": self.problem or None,
        }


def _figure(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(baseline: BenchFigures, outcomes: list[Outcome], batch: int) -> str:
    """Every candidate, its gate figures and its speed at ``batch`` rows, side by side."""
    header = (
        "candidate",
        "status",
        "mean cos",
        "min cos",
        "max abs err",
        "top-1",
        f"p50 ms@{batch}",
        f"p99 ms@{batch}",
        f"inf/s@{batch}",
        "speedup",
        "MiB file",
        "MiB RSS",
    )
    rows = [header, _row("served", "baseline", None, baseline, 1.0, batch)]
    for o in outcomes:
        rows.append(_row(o.candidate.name, o.status, o, o.bench, o.speedup, batch))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    notes = [f"  {o.candidate.name}: {o.candidate.skipped}" for o in outcomes if o.candidate.skipped]
    notes += [
        f"  {o.candidate.name}: {'; '.join(o.verdict.reasons)}"
        for o in outcomes
        if o.verdict is not None and not o.verdict.passed
    ]
    notes += [f"  {o.candidate.name}: {o.problem}" for o in outcomes if o.problem]
    return "\n".join(lines + (["", "why:"] + notes if notes else []))


def _row(
    name: str, status: str, o: Outcome | None, bench: BenchFigures | None, speedup: float | None, batch: int
) -> tuple[str, ...]:
    gate = o.gate_summary() if o is not None and o.verdict is not None else {}
    cells = [
        name,
        status,
        _figure(gate.get("min_mean_cosine")),
        _figure(gate.get("min_cosine")),
        _figure(gate.get("max_abs_error"), 5),
        _figure(gate.get("min_top1_agreement"), 3),
    ]
    if bench is None:
        return (*cells, "-", "-", "-", _figure(speedup, 2), "-", "-")
    at = next((b for b in bench.batches if b["batch_size"] == batch), bench.batches[-1])
    return (
        *cells,
        f"{at['p50_ms']:.3f}",
        f"{at['p99_ms']:.3f}",
        f"{at['inferences_per_s']:.0f}",
        _figure(speedup, 2),
        f"{bench.file_bytes / 2**20:.2f}",
        f"{bench.peak_rss_bytes / 2**20:.0f}",
    )
