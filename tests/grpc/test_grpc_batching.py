"""Lone gRPC calls run inline by default, and concurrent gRPC calls still batch like REST ones.

grpc.aio hands the event loop one call at a time: a model that ran each arriving call inline would
never batch them. Counted from the model's statistics and metrics (executions against inferences,
inline executions), never timed.
"""

from __future__ import annotations

import asyncio
import time
from types import ModuleType

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from metricsutil import scrape, value
from serverctl import RunningServer, start_server

CALLERS = 32
CALLS_EACH = 4
# Slow enough that 32 concurrent callers must queue behind each execution.
SLOW_MS = 20
BATCHING = "max_batch_size: 32\ndynamic_batching: {}\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    root = tmp_path_factory.mktemp("grpc-batching-models")
    mf.write_model(root, "fast", lambda p: mf.add_constant(p, 1.0), config=BATCHING)
    mf.write_model(root, "slow", lambda p: mf.slow(p, SLOW_MS), config=BATCHING)
    # The server's defaults: inline execution in auto mode (inferd/scheduler/lone.py).
    running = start_server(root, tmp_path_factory.mktemp("grpc-batching-server"))
    yield running  # type: ignore[misc]
    assert running.stop() == 0, running.log()


def _counts(server: RunningServer, model: str) -> tuple[float, float, float]:
    samples = scrape(server.http_url)
    labels = {"model": model, "version": "1"}
    return (
        value(samples, "inferd_inferences_total", **labels),
        value(samples, "inferd_executions_total", **labels),
        value(samples, "inferd_inline_executions_total", **labels),
    )


def _tensor(index: int, module: ModuleType = grpcclient) -> tuple[object, np.ndarray]:
    data = np.full((1, 4), float(index), np.float32)
    tensor = module.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    return tensor, data


def test_lone_grpc_calls_to_a_fast_model_run_inline_by_default(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for index in range(8):
        tensor, data = _tensor(index)
        output = client.infer("fast", [tensor]).as_numpy("OUTPUT0")  # type: ignore[list-item]
        np.testing.assert_allclose(output, data + 1)
        time.sleep(0.02)  # a lone client: the model and the loop idle between its calls
    # The first runs are measured on the worker, later lone calls run inline (unless a run on this
    # shared machine came out slower than the bound, or a turn looked busy: hence at least one).
    inferences, executions, inline = _counts(server, "fast")
    assert (inferences, executions) == (8, 8) and inline >= 1


def test_concurrent_grpc_calls_share_executions(server: RunningServer) -> None:
    inferences0, executions0, _ = _counts(server, "slow")

    async def caller(client: aioclient.InferenceServerClient, first: int) -> None:
        for index in range(first, first + CALLS_EACH):
            tensor, data = _tensor(index, aioclient)
            result = await client.infer("slow", [tensor])  # type: ignore[list-item]
            np.testing.assert_allclose(result.as_numpy("OUTPUT0"), data + 1)

    async def drive() -> None:
        client = aioclient.InferenceServerClient(server.grpc_url)
        try:
            await asyncio.gather(*(caller(client, n * CALLS_EACH) for n in range(CALLERS)))
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(drive(), 120))
    inferences1, executions1, _ = _counts(server, "slow")
    inferences, executions = inferences1 - inferences0, executions1 - executions0
    assert inferences == CALLERS * CALLS_EACH
    # Calls that reach the model while an execution runs queue and run together: far fewer
    # executions than calls.
    assert executions * 4 <= inferences, (inferences, executions)
