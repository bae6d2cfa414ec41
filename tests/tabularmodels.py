"""scikit-learn, XGBoost and LightGBM models trained on a few hundred synthetic rows, written into a
model repository with the native model kept beside for reference outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import lightgbm
import numpy as np
import xgboost
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = 6


@dataclass(frozen=True)
class Trained:
    model: Any  # the native model, for reference outputs
    classifier: bool
    rows: np.ndarray  # rows like its training data (FP32)


def classification_rows(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    features, labels = make_classification(
        n_samples=300, n_features=FEATURES, n_informative=4, n_classes=3, random_state=seed
    )
    return features.astype(np.float32), labels


def regression_rows(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    features, targets = make_regression(n_samples=300, n_features=FEATURES, noise=0.1, random_state=seed)
    return features.astype(np.float32), targets


def sklearn_classifier(version_dir: Path, estimators: int = 20) -> Trained:
    rows, labels = classification_rows()
    model = make_pipeline(
        StandardScaler(), GradientBoostingClassifier(n_estimators=estimators, random_state=0)
    )
    model.fit(rows, labels)
    joblib.dump(model, _ready(version_dir) / "model.joblib")
    return Trained(model, True, rows)


def sklearn_regressor(version_dir: Path) -> Trained:
    rows, targets = regression_rows()
    model = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(rows, targets)
    joblib.dump(model, _ready(version_dir) / "model.pkl")
    return Trained(model, False, rows)


def sklearn_unconvertible(version_dir: Path) -> Trained:
    """A classifier skl2onnx has no converter for."""
    rows, labels = classification_rows()
    model = NearestCentroid().fit(rows, labels)
    joblib.dump(model, _ready(version_dir) / "model.joblib")
    return Trained(model, True, rows)


def xgboost_classifier(version_dir: Path) -> Trained:
    rows, labels = classification_rows()
    model = xgboost.XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1).fit(rows, labels)
    model.save_model(_ready(version_dir) / "model.json")
    return Trained(model, True, rows)


def xgboost_regressor(version_dir: Path) -> Trained:
    rows, targets = regression_rows()
    model = xgboost.XGBRegressor(n_estimators=15, max_depth=3, n_jobs=1).fit(rows, targets)
    model.save_model(_ready(version_dir) / "model.ubj")
    return Trained(model, False, rows)


def lightgbm_classifier(version_dir: Path) -> Trained:
    rows, labels = classification_rows()
    model = lightgbm.LGBMClassifier(n_estimators=15, verbose=-1, n_jobs=1).fit(rows, labels)
    model.booster_.save_model(_ready(version_dir) / "model.txt")
    return Trained(model, True, rows)


def lightgbm_regressor(version_dir: Path) -> Trained:
    rows, targets = regression_rows()
    model = lightgbm.LGBMRegressor(n_estimators=15, verbose=-1, n_jobs=1).fit(rows, targets)
    model.booster_.save_model(_ready(version_dir) / "model.txt")
    return Trained(model, False, rows)


def lightgbm_disagreeing(version_dir: Path) -> Trained:
    """A regressor whose ONNX conversion disagrees with it: its features are around 1e8, where FP32
    (the converted trees' thresholds) cannot tell apart the values LightGBM split on in FP64."""
    rng = np.random.default_rng(0)
    rows = 1e8 + rng.uniform(0, 2000, size=(400, 4))
    targets = (rows[:, 0] - 1e8) * 3.0 + (rows[:, 1] - 1e8)
    model = lightgbm.LGBMRegressor(n_estimators=30, min_child_samples=5, verbose=-1, n_jobs=1)
    model.fit(rows, targets)
    model.booster_.save_model(_ready(version_dir) / "model.txt")
    return Trained(model, False, rows.astype(np.float32))


def reference(trained: Trained, rows: np.ndarray) -> dict[str, np.ndarray]:
    """What the native model answers, in the served types."""
    model = trained.model
    if not trained.classifier:
        return {"predict": model.predict(rows).astype(np.float32)}
    return {
        "predict": model.predict(rows).astype(np.int64),
        "predict_proba": model.predict_proba(rows).astype(np.float32),
    }


def _ready(version_dir: Path) -> Path:
    version_dir.mkdir(parents=True, exist_ok=True)
    return version_dir
