"""The optimize loop without its command line: served outputs, candidates, gate, benchmark, choice."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferd.model_config import ModelConfig
from inferd.optimize import benchmark, candidates, sessions
from inferd.optimize.benchmark import BenchFigures, BenchSettings
from inferd.optimize.candidates import Candidate
from inferd.optimize.gate import Thresholds, Verdict, judge
from inferd.optimize.outcome import Outcome
from inferd.optimize.provenance import now, sha256, tool_versions, write_version
from inferd.optimize.samples import Samples

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    model_dir: Path
    source_version: int
    source_file: Path
    config: ModelConfig
    thresholds: Thresholds = Thresholds()
    classifiers: frozenset[str] = frozenset()
    # Files to judge instead of the built candidates (--candidate).
    user_candidates: tuple[Path, ...] = ()
    # Build only these methods (candidates.METHODS); empty: all.
    methods: frozenset[str] = frozenset()
    bench: BenchSettings = BenchSettings()
    min_speedup: float = 1.0


@dataclass(slots=True)
class Result:
    plan: Plan
    samples: Samples
    batch_sizes: list[int]
    baseline: BenchFigures | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    best: Outcome | None = None
    # Why nothing is written (no candidate passed, none fast enough); empty when ``best`` is set.
    refusal: str = ""
    written_version: int | None = None

    def provenance(self) -> dict[str, Any]:
        assert self.best is not None and self.best.bench is not None and self.baseline is not None
        plan, best, bench = self.plan, self.best, self.best.bench
        return {
            "source_version": plan.source_version,
            "source_sha256": sha256(plan.source_file),
            "candidate": best.candidate.name,
            "method": best.candidate.method,
            "created": now(),
            "samples": {"origin": self.samples.origin, "kind": self.samples.kind, "rows": self.samples.rows},
            "thresholds": plan.thresholds.as_dict(),
            "gate": {**best.gate_summary(), **(best.verdict.as_dict() if best.verdict else {})},
            "benchmark": {"candidate": bench.as_dict(), "source": self.baseline.as_dict()},
            "speedup": round(best.speedup or 0.0, 4),
            "tools": tool_versions(),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.plan.model_dir.name,
            "source_version": self.plan.source_version,
            "samples": {"origin": self.samples.origin, "kind": self.samples.kind, "rows": self.samples.rows},
            "thresholds": self.plan.thresholds.as_dict(),
            "batch_sizes": self.batch_sizes,
            "baseline": self.baseline.as_dict() if self.baseline else None,
            "candidates": [o.as_dict() for o in self.outcomes],
            "best": self.best.candidate.name if self.best else None,
            "refusal": self.refusal or None,
            "written_version": self.written_version,
        }


def optimize(
    plan: Plan, samples: Samples, write: bool = True, announce: Callable[[int], None] | None = None
) -> Result:
    """Judge and benchmark every candidate; write the best as the next version when ``write``
    (``announce``: called with its number just before it appears; see ``write_version``)."""
    served = sessions.open_session(plan.source_file, plan.config)
    model = sessions.facts(served, plan.config)
    feeds = sessions.feeds(samples, model)
    reference = sessions.run_all(served, feeds, model)
    del served
    sizes = benchmark.batch_sizes(plan.config, model.batched, model.max_batch_size)
    result = Result(plan, samples, sizes)
    with tempfile.TemporaryDirectory(prefix="inferd-optimize-") as scratch:
        workdir = Path(scratch)

        def calibration() -> Iterator[dict[str, np.ndarray]]:
            return sessions.chunks(feeds, model)

        if plan.user_candidates:
            built = [candidates.user_candidate(path) for path in plan.user_candidates]
        else:
            built = candidates.build_all(plan.source_file, workdir, calibration, plan.methods)
        for candidate in built:
            outcome = Outcome(candidate)
            if candidate.path is not None:
                outcome.verdict = _judge(candidate, plan, reference, feeds, model)
            result.outcomes.append(outcome)
        samples_npz = workdir / "samples.npz"
        np.savez(samples_npz, allow_pickle=False, **feeds)
        passing = [o for o in result.outcomes if o.verdict is not None and o.verdict.passed]
        if not passing:
            result.refusal = "no candidate passed the accuracy gate"
            return result
        _measure(result, passing, samples_npz, model.batched, workdir)
        ranked = sorted((o for o in passing if o.bench is not None), key=lambda o: -(o.speedup or 0.0))
        if not ranked:
            result.refusal = "no passing candidate could be benchmarked"
            return result
        if (ranked[0].speedup or 0.0) < plan.min_speedup:
            result.refusal = (
                f"the fastest passing candidate ({ranked[0].candidate.name}) is {ranked[0].speedup:.2f}x the "
                f"served version, below --min-speedup {plan.min_speedup:g}"
            )
            return result
        result.best = ranked[0]
        if write:
            assert result.best.candidate.path is not None
            result.written_version = write_version(
                plan.model_dir, result.best.candidate.path, result.provenance(), announce
            )
    return result


def _measure(result: Result, passing: list[Outcome], samples_npz: Path, batched: bool, workdir: Path) -> None:
    """Benchmark the served file and each passing candidate, round after round (BenchSettings.rounds)."""
    plan = result.plan
    sizes = result.batch_sizes
    for _ in range(plan.bench.rounds):
        result.baseline = benchmark.fastest(
            result.baseline,
            benchmark.run(plan.source_file, samples_npz, sizes, batched, plan.config, plan.bench, workdir),
        )
        for outcome in passing:
            assert outcome.candidate.path is not None
            if outcome.problem:
                continue
            try:
                figures = benchmark.run(
                    outcome.candidate.path, samples_npz, sizes, batched, plan.config, plan.bench, workdir
                )
            except benchmark.BenchmarkError as exc:
                outcome.problem, outcome.bench = str(exc), None
                continue
            outcome.bench = benchmark.fastest(outcome.bench, figures)
    assert result.baseline is not None
    for outcome in passing:
        if outcome.bench is not None:
            outcome.speedup = benchmark.speedup(outcome.bench, result.baseline)


def _judge(
    candidate: Candidate,
    plan: Plan,
    reference: dict[str, np.ndarray],
    feeds: dict[str, np.ndarray],
    model: sessions.Facts,
) -> Verdict:
    assert candidate.path is not None
    try:
        session = sessions.open_session(candidate.path, plan.config)
        got = sessions.run_all(session, feeds, model)
    except Exception as exc:  # a candidate that does not load or run fails the gate, with the reason
        return Verdict(error=f"does not run: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    return judge(reference, got, model.outputs, plan.thresholds, plan.classifiers)
