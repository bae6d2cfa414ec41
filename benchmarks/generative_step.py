"""One decode step of the smollm2 decoder graph timed alone: how a step's cost grows with rows and cached
positions (docs/performance.md, "Generative serving"). Zero-filled inputs, 1 intra-op thread.

    python benchmarks/generative_step.py /tmp/smollm2-models/smollm2/1/model.onnx
"""

from __future__ import annotations

import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
    past = [i for i in session.get_inputs() if i.name.startswith("past.")]
    kv_heads, head_dim = int(past[0].shape[1]), int(past[0].shape[3])

    def step(rows: int, width: int) -> float:
        feed = {
            "input_ids": np.zeros((rows, 1), np.int64),
            "attention_mask": np.ones((rows, width + 1), np.int64),
            "position_ids": np.full((rows, 1), width, np.int64),
        }
        feed.update({i.name: np.zeros((rows, kv_heads, width, head_dim), np.float32) for i in past})
        session.run(None, feed)
        start = time.perf_counter()
        for _ in range(3):
            session.run(None, feed)
        return (time.perf_counter() - start) / 3

    print("| rows × cached positions | ms / step | tokens/s |\n| --- | --- | --- |")
    for rows, width in ((1, 64), (16, 64), (1, 480), (16, 480)):
        seconds = step(rows, width)
        print(f"| {rows} × {width} | {seconds * 1e3:.0f} | {rows / seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
