"""The accuracy gate on known arrays: what passes, what fails and why."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.optimize.gate import Thresholds, judge

RNG = np.random.default_rng(3)
FLOAT = {"emb": "tensor(float)"}


def test_identical_outputs_pass_with_perfect_figures() -> None:
    emb = RNG.normal(size=(20, 8)).astype(np.float32)
    verdict = judge({"emb": emb}, {"emb": emb.copy()}, FLOAT, Thresholds())
    assert verdict.passed
    (figures,) = verdict.outputs
    assert figures.kind == "float" and figures.top1_agreement is None
    assert figures.mean_cosine == pytest.approx(1.0) and figures.min_cosine == pytest.approx(1.0)
    assert figures.max_abs_error == 0.0


def test_small_noise_passes_and_large_noise_fails_on_cosine() -> None:
    emb = RNG.normal(size=(50, 16))
    small = judge({"emb": emb}, {"emb": emb + RNG.normal(scale=0.01, size=emb.shape)}, FLOAT, Thresholds())
    assert small.passed, small.reasons
    large = judge({"emb": emb}, {"emb": emb + RNG.normal(scale=1.0, size=emb.shape)}, FLOAT, Thresholds())
    assert not large.passed
    assert any("mean cosine" in reason for reason in large.reasons)


def test_one_bad_row_fails_on_min_cosine_though_the_mean_holds() -> None:
    emb = RNG.normal(size=(400, 16))
    got = emb.copy()
    got[7] = -got[7]
    verdict = judge({"emb": emb}, {"emb": got}, FLOAT, Thresholds(max_drop=0.01, min_cosine=0.9))
    assert verdict.outputs[0].mean_cosine is not None and verdict.outputs[0].mean_cosine > 0.99
    assert verdict.reasons == ["emb: min cosine -1.0000 < 0.9000"]


def test_max_abs_error_is_gated_only_when_set() -> None:
    emb = np.ones((4, 4))
    got = emb + 0.5 * np.eye(4)
    assert judge({"emb": emb}, {"emb": got}, FLOAT, Thresholds(min_cosine=0.5, max_drop=0.1)).passed
    verdict = judge({"emb": emb}, {"emb": got}, FLOAT, Thresholds(0.1, 0.5, max_abs_error=0.1))
    assert verdict.reasons == ["emb: max abs error 0.5 > 0.1"]


def test_classifier_outputs_are_gated_on_top1_agreement() -> None:
    logits = np.tile(np.array([[3.0, 2.9, 0.0]]), (100, 1))
    flipped = logits.copy()
    flipped[:5] = [[2.9, 3.0, 0.0]]  # 5% of the rows change class; cosine stays high
    types = {"logits": "tensor(float)"}
    verdict = judge({"logits": logits}, {"logits": flipped}, types, Thresholds(max_drop=0.01, min_cosine=0.5))
    assert verdict.outputs[0].kind == "classifier"
    assert verdict.outputs[0].top1_agreement == 0.95
    assert verdict.reasons == ["logits: top-1 agreement 0.9500 < 0.9900"]
    assert judge(
        {"logits": logits}, {"logits": flipped}, types, Thresholds(max_drop=0.05, min_cosine=0.5)
    ).passed


def test_integer_labels_are_compared_as_labels() -> None:
    labels = np.arange(100, dtype=np.int64) % 3
    got = labels.copy()
    got[0] = 2
    verdict = judge({"label": labels}, {"label": got}, {"label": "tensor(int64)"}, Thresholds(max_drop=0.0))
    assert verdict.outputs[0].top1_agreement == 0.99
    assert not verdict.passed


def test_nan_shape_change_and_missing_output_fail_with_the_reason() -> None:
    emb = RNG.normal(size=(4, 4))
    nan = emb.copy()
    nan[0, 0] = np.nan
    assert judge({"emb": emb}, {"emb": nan}, FLOAT, Thresholds()).reasons == [
        "emb: the candidate gives NaN or infinity"
    ]
    assert "shape" in judge({"emb": emb}, {"emb": emb[:, :2]}, FLOAT, Thresholds()).reasons[0]
    assert "missing" in judge({"emb": emb}, {}, FLOAT, Thresholds()).reasons[0]


def test_all_zero_rows_agree_only_with_all_zero_rows() -> None:
    zeros = np.zeros((2, 4))
    assert judge({"emb": zeros}, {"emb": zeros}, FLOAT, Thresholds()).passed
    assert not judge({"emb": zeros}, {"emb": np.ones((2, 4))}, FLOAT, Thresholds()).passed
