"""Native vs converted-to-ONNX, side by side: scikit-learn, XGBoost and LightGBM classifiers served by
inferd's tabular runtime (in-process ``runtime.run`` calls, no server), at batch 1 and batch 1000.

    python benchmarks/framework_runtimes.py [--runs 200] [--threads 1]

Each framework's classifier is trained on the same synthetic fraud-style data (10,000 rows, 30
features), saved as the platform's file, and loaded twice: ``convert: never`` (native) and
``convert: always`` (the ONNX conversion, served by ONNX Runtime). Prints microseconds per call (median
of ``--runs`` calls after a warm-up) and writes benchmarks/results/framework_runtimes.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import lightgbm
import numpy as np
import xgboost
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from inferd.model_config import ModelConfig
from inferd.runtimes.registry import create_runtime

HERE = Path(__file__).resolve().parent
BATCHES = (1, 1000)


def _data() -> tuple[np.ndarray, np.ndarray]:
    features, labels = make_classification(
        n_samples=10_000, n_features=30, n_informative=12, n_redundant=6, weights=[0.97], random_state=0
    )
    return features.astype(np.float32), labels


def _sklearn(rows: np.ndarray, labels: np.ndarray, version: Path) -> str:
    pipeline = make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=100, random_state=0))
    joblib.dump(pipeline.fit(rows, labels), version / "model.joblib")
    return "StandardScaler + GradientBoostingClassifier (100 trees, depth 3)"


def _xgboost(rows: np.ndarray, labels: np.ndarray, version: Path) -> str:
    model = xgboost.XGBClassifier(n_estimators=100, max_depth=6, n_jobs=1).fit(rows, labels)
    model.save_model(version / "model.json")
    return "XGBClassifier (100 trees, depth 6)"


def _lightgbm(rows: np.ndarray, labels: np.ndarray, version: Path) -> str:
    model = lightgbm.LGBMClassifier(n_estimators=100, verbose=-1, n_jobs=1).fit(rows, labels)
    model.booster_.save_model(version / "model.txt")
    return "LGBMClassifier (100 trees, 31 leaves)"


FRAMEWORKS: dict[str, Callable[[np.ndarray, np.ndarray, Path], str]] = {
    "sklearn": _sklearn,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
}


def _median_us(call: Callable[[], object], runs: int) -> float:
    for _ in range(max(5, runs // 10)):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="threads per runtime (native and ORT)")
    args = parser.parse_args()
    rows, labels = _data()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, train in FRAMEWORKS.items():
            version = Path(scratch) / name / "1"
            version.mkdir(parents=True)
            model = train(rows, labels, version)
            options = {"threads": args.threads}
            native = create_runtime(
                version / "x", ModelConfig.model_validate({name: options | {"convert": "never"}})
            )
            onnx = create_runtime(
                version / "x", ModelConfig.model_validate({name: options | {"convert": "always"}})
            )
            for batch in BATCHES:
                feed = {"input": rows[:batch]}
                runs = args.runs if batch == 1 else max(20, args.runs // 10)
                native_us = _median_us(lambda r=native, f=feed: r.run(0, f), runs)
                onnx_us = _median_us(lambda r=onnx, f=feed: r.run(0, f), runs)
                results.append(
                    {
                        "framework": name,
                        "model": model,
                        "batch": batch,
                        "native_us": round(native_us, 1),
                        "onnx_us": round(onnx_us, 1),
                        "speedup": round(native_us / onnx_us, 2),
                    }
                )
            print(f"{name}: {onnx.parameters['conversion']}")  # type: ignore[attr-defined]
    print()
    print("| framework | model | batch | native µs/call | ONNX µs/call | ONNX speed-up |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['framework']} | {r['model']} | {r['batch']} | {r['native_us']:,.1f} | {r['onnx_us']:,.1f} "
            f"| {r['speedup']:.2f}x |"
        )
    out = HERE / "results" / "framework_runtimes.json"
    out.parent.mkdir(exist_ok=True)
    document = {
        "machine": platform.platform(),
        "threads": args.threads,
        "runs": args.runs,
        "results": results,
    }
    out.write_text(json.dumps(document, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
