"""How long one /metrics scrape and one access-log line take (both run on the event loop thread).

Builds the example repository, copies the tabular model into N model directories, loads them, records
some traffic into their stats, then times prometheus_client.generate_latest on the server's registry,
and the access-log call with the JSON formatter writing to /dev/null.
Run from the repository root: PYTHONPATH=. python benchmarks/metrics_scrape.py [--models 50]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import timeit
from pathlib import Path

from inferd.dataplane.access_log import log_request
from inferd.examples import build_repository
from inferd.logging_setup import JsonFormatter
from inferd.metrics.registry import Metrics
from inferd.repository.manager import ModelRepository


def _repository(root: Path, copies: int) -> ModelRepository:
    build_repository(root / "examples")
    models = root / "models"
    for i in range(copies):
        shutil.copytree(root / "examples" / "tabular", models / f"tabular{i}")
    repository = ModelRepository(models)
    repository.load_all()
    for entry in repository.entries():
        for model in entry.versions.values():
            for ns in (30_000, 80_000, 400_000, 2_000_000):
                model.stats.record_success(ns)
                model.stats.record_queue(ns // 10)
            for rows in (1, 2, 4, 8):
                model.stats.record_execution(rows, rows, 1_000, 20_000, 1_000)
    return repository


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repository = _repository(Path(tmp), args.models)
        metrics = Metrics(repository, price_per_hour=1.0)
        size = len(metrics.exposition()[1])
        runs = 20
        seconds = min(timeit.repeat(metrics.exposition, number=runs, repeat=5)) / runs
        print(f"scrape, {args.models} models: {seconds * 1e3:.2f} ms ({size / 1024:.0f} KiB)")

    handler = logging.StreamHandler(open("/dev/null", "w"))  # noqa: SIM115 - closed at exit
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("inferd.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    number = 20_000

    def line() -> None:
        log_request("request-1", "tabular", "1", "ok", 123_456)

    per_call = min(timeit.repeat(line, number=number, repeat=5)) / number
    print(f"access log line (JSON): {per_call * 1e6:.1f} us")


if __name__ == "__main__":
    main()
