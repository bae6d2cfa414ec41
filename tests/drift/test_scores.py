from __future__ import annotations

import numpy as np

from inferd.drift.profile import profile_input
from inferd.drift.scores import score_input

RNG = np.random.default_rng(7)


def _exact_ks(a: np.ndarray, b: np.ndarray) -> float:
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(np.sort(a), points, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def test_same_distribution_scores_low_and_a_shift_scores_high() -> None:
    reference = RNG.normal(size=(5000, 2))
    profile = profile_input("x", reference, bins=10)
    same = score_input(profile, RNG.normal(size=(2000, 2)))
    shifted = score_input(profile, RNG.normal(loc=[0.0, 1.0], size=(2000, 2)))
    for psi, ks in same:
        assert psi < 0.05 and ks < 0.06
    assert shifted[0][0] < 0.05  # feature 0 did not move
    assert shifted[1][0] > 0.5 and shifted[1][1] > 0.3


def test_ks_at_reference_quantiles_is_close_to_the_exact_statistic() -> None:
    reference = RNG.normal(size=(5000, 1))
    live = RNG.normal(loc=0.3, scale=1.5, size=(3000, 1))
    ((_, ks),) = score_input(profile_input("x", reference, bins=10), live)
    assert abs(ks - _exact_ks(reference[:, 0], live[:, 0])) < 0.02


def test_a_constant_feature_and_an_unseen_bin_stay_finite() -> None:
    profile = profile_input("x", np.zeros((100, 1)), bins=10)
    ((psi, ks),) = score_input(profile, np.ones((50, 1)))
    assert np.isfinite(psi) and psi > 1
    assert ks == 1.0
