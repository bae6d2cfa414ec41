"""A request alone in the server runs inline at once (no loop turn); a gRPC call never counts as alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import modelfactory as mf
import numpy as np
import pytest

from inferd.dataplane.dataplane import DataPlane
from inferd.repository.manager import ModelRepository
from inferd.types import InferRequest, InferResponse, Tensor

# 10 ms, the largest bound allowed: far above an add model's run, so the outcome does not depend on
# this machine's speed.
CONFIG = "max_batch_size: 4\ndynamic_batching: {}\ninline_execution_max_us: 10000\n"
IDLE_S = 0.02


class _Call:
    """The smallest InferCall: the front-end's codec is not what is tested here."""

    model = "m"
    version = None
    caller = None

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol

    def decode(self, admission: Any) -> InferRequest:
        return InferRequest("m", None, [Tensor("INPUT0", "FP32", np.zeros((1, 4), np.float32))])

    def encode(self, request: InferRequest, response: InferResponse) -> InferResponse:
        return response

    def carrier(self) -> dict[str, str]:
        return {}


def _suspends(coroutine: Any) -> bool:
    try:
        coroutine.send(None)
    except StopIteration:
        return False
    return True


def test_a_rest_call_alone_runs_at_once_and_a_grpc_call_takes_the_queued_path(tmp_path: Path) -> None:
    async def scenario() -> None:
        mf.write_model(tmp_path, "m", lambda p: mf.add_constant(p, 1.0), config=CONFIG)
        repository = ModelRepository(tmp_path)
        await repository.load_initial(None, exit_on_error=True)
        dataplane = DataPlane(repository)
        stats = repository.get("m").stats
        await dataplane.serve(_Call("http"))  # the shape's first run is measured on the worker
        await asyncio.sleep(IDLE_S)
        assert not _suspends(dataplane.serve(_Call("http")))
        assert stats.inline_executions == 1
        await asyncio.sleep(IDLE_S)
        grpc_call = dataplane.serve(_Call("grpc"))
        assert _suspends(grpc_call)
        await asyncio.sleep(IDLE_S)
        with pytest.raises(StopIteration):
            grpc_call.send(None)
        # A REST request while a gRPC call is in progress is not alone: both queue and share a run.
        await asyncio.sleep(IDLE_S)
        grpc_call, rest_call = dataplane.serve(_Call("grpc")), dataplane.serve(_Call("http"))
        assert _suspends(grpc_call) and _suspends(rest_call)
        await asyncio.sleep(IDLE_S)
        for call in (grpc_call, rest_call):
            with pytest.raises(StopIteration) as done:
                call.send(None)
            assert float(done.value.value.outputs[0].data[0, 0]) == 1.0
        assert stats.execution_count == 4  # the last two shared one execution
        await repository.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
