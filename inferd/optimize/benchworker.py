"""One candidate's benchmark, run as its own process so its peak RSS is its own:
``python -m inferd.optimize.benchworker SPEC.json`` prints the figures as JSON on stdout."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from inferd.optimize.sessions import providers


def _batch(arrays: dict[str, np.ndarray], size: int, batched: bool) -> dict[str, np.ndarray]:
    """``size`` rows taken cyclically from the samples (or the first sample, unbatched)."""
    if not batched:
        return {n: a[0] for n, a in arrays.items()}
    return {n: np.take(a, np.arange(size) % len(a), axis=0) for n, a in arrays.items()}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(spec["intra_op_threads"])
    options.inter_op_num_threads = int(spec["inter_op_threads"])
    options.log_severity_level = 3
    started = time.perf_counter()
    session = ort.InferenceSession(spec["model"], sess_options=options, providers=providers())
    load_s = time.perf_counter() - started
    with np.load(spec["samples"], allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    results = []
    for size in spec["batch_sizes"]:
        feed = _batch(arrays, size, bool(spec["batched"]))
        for _ in range(int(spec["warmup"])):
            session.run(None, feed)
        times: list[float] = []
        deadline = time.perf_counter() + float(spec["min_time_s"])
        while len(times) < int(spec["iterations"]) or (
            time.perf_counter() < deadline and len(times) < 100 * int(spec["iterations"])
        ):
            start = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - start)
        latencies = np.array(times)
        results.append(
            {
                "batch_size": size,
                "runs": len(times),
                "p50_ms": float(np.percentile(latencies, 50) * 1000),
                "p99_ms": float(np.percentile(latencies, 99) * 1000),
                "inferences_per_s": float(size * len(times) / latencies.sum()),
            }
        )
    # ru_maxrss is in KiB on Linux: the whole process (interpreter, numpy, ONNX Runtime, session).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"load_s": load_s, "peak_rss_bytes": peak, "batches": results}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    json.dump(measure(spec), sys.stdout)


if __name__ == "__main__":
    main()
