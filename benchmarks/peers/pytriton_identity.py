"""The same identity as benchmarks/models/identity.py served by PyTriton: a Python callable bound to
real Triton (tritonserver from the wheel) with Triton's dynamic batcher; PyTriton's ``@batch`` hands
the callable the whole batch, as inferd's ``predict`` receives it.

Usage: python pytriton_identity.py NAME HTTP_PORT GRPC_PORT METRICS_PORT MAX_BATCH DELAY_US
"""

import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


@batch
def identity(x):
    return {"y": x}


def main():
    name, http, grpc, metrics, max_batch, delay_us = sys.argv[1:7]
    config = TritonConfig(
        http_address="127.0.0.1", http_port=int(http), grpc_address="127.0.0.1", grpc_port=int(grpc),
        metrics_port=int(metrics), allow_metrics=False,
    )  # fmt: skip
    with Triton(config=config) as triton:
        triton.bind(
            model_name=name,
            infer_func=identity,
            inputs=[Tensor(name="x", dtype=np.float32, shape=(30,))],
            outputs=[Tensor(name="y", dtype=np.float32, shape=(30,))],
            config=ModelConfig(
                max_batch_size=int(max_batch),
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(delay_us)),
            ),
        )
        triton.serve()


if __name__ == "__main__":
    main()
