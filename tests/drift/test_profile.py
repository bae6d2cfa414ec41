from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferd.drift.profile import ReferenceProfile, build_profile, feature_matrix


def test_profile_round_trips_through_json(tmp_path: Path) -> None:
    data = {"x": np.random.default_rng(1).normal(size=(300, 2, 3)).astype(np.float32)}
    profile = build_profile(data, batched=True, bins=5)
    assert profile.inputs["x"].features == 6
    assert profile.rows == 300
    path = tmp_path / "p.json"
    profile.save(path)
    assert ReferenceProfile.load(path) == profile
    fractions = profile.inputs["x"].fractions[0]
    assert sum(fractions) == pytest.approx(1.0)


def test_too_many_features_or_too_few_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 4 are profiled"):
        build_profile({"x": np.zeros((100, 5))}, batched=True, max_features=4)
    with pytest.raises(ValueError, match="too few"):
        build_profile({"x": np.zeros((3, 2))}, batched=True, bins=10)


def test_feature_matrix_keeps_the_batch_axis_only_for_batching_models() -> None:
    assert feature_matrix(np.zeros((4, 2, 3)), batched=True).shape == (4, 6)
    assert feature_matrix(np.zeros((3, 4)), batched=False).shape == (1, 12)
