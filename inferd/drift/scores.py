"""Drift scores of a live window against a reference InputProfile, one pair per feature."""

from __future__ import annotations

import numpy as np

from inferd.drift.profile import InputProfile

# Empty bins would make PSI infinite; a floor keeps one unseen bin a large but finite score.
_FLOOR = 1e-4


def psi(live: np.ndarray, edges: list[float], reference: list[float]) -> float:
    """Population stability index of one feature's live values over the reference bins."""
    counts = np.bincount(np.searchsorted(edges, live, side="left"), minlength=len(reference))
    actual = np.maximum(counts / max(len(live), 1), _FLOOR)
    expected = np.maximum(np.asarray(reference), _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks(live: np.ndarray, quantiles: list[float], reference_cdf: list[float]) -> float:
    """Kolmogorov-Smirnov statistic, the CDFs compared at the reference's 101 quantiles."""
    ordered = np.sort(live)
    live_cdf = np.searchsorted(ordered, quantiles, side="right") / max(len(live), 1)
    return float(np.max(np.abs(live_cdf - np.asarray(reference_cdf))))


def score_input(profile: InputProfile, window: np.ndarray) -> list[tuple[float, float]]:
    """(psi, ks) per feature of a (rows, features) window."""
    return [
        (
            psi(window[:, f], profile.edges[f], profile.fractions[f]),
            ks(window[:, f], profile.quantiles[f], profile.cdf[f]),
        )
        for f in range(profile.features)
    ]
