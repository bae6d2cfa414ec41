"""Latency-vs-throughput PNG (matplotlib, an optional extra: pip install 'inferd[plot]')."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from inferd.bench.scenarios import Measurement


def plot_latency_throughput(measurements: Sequence[Measurement], path: Path, title: str) -> None:
    """p50 and p99 latency against achieved inferences/s, one point per measurement."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; write files only
    import matplotlib.pyplot as plt

    points = sorted(measurements, key=lambda m: m.inferences_per_s)
    throughput = [m.inferences_per_s for m in points]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for p, style in ((50.0, "o-"), (99.0, "s--")):
        axes.plot(throughput, [m.latency.percentiles[p] * 1e3 for m in points], style, label=f"p{p:g}")
    for m in points:
        axes.annotate(
            m.label.split(" ", 1)[-1],
            (m.inferences_per_s, m.latency.percentiles[99.0] * 1e3),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    axes.set_xlabel("achieved inferences / s")
    axes.set_ylabel("latency (ms)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
