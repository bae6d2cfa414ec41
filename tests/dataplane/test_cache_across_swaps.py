"""The response cache never answers from a replaced model file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import modelfactory as mf
import numpy as np

from inferd.cache.memory import MemoryCache
from inferd.dataplane.dataplane import DataPlane
from inferd.repository.manager import ModelRepository
from inferd.types import InferRequest, Tensor

CONFIG = "max_batch_size: 4\nresponse_cache: true\n"


def test_a_file_replaced_under_the_same_version_is_not_answered_from_the_cache(tmp_path: Path) -> None:
    async def scenario() -> None:
        model_dir = mf.write_model(tmp_path, "m", lambda p: mf.add_constant(p, 1.0), config=CONFIG)
        repository = ModelRepository(tmp_path)
        await repository.load_initial(None, exit_on_error=True)
        cache = MemoryCache(1 << 20)
        dataplane = DataPlane(repository, cache)
        request = InferRequest("m", None, [Tensor("INPUT0", "FP32", np.zeros((1, 4), np.float32))])
        for _ in range(2):  # the second answer comes from the cache
            assert float((await dataplane.infer(request)).outputs[0].data[0, 0]) == 1.0
        assert repository.get("m").stats.cache_hit.count == 1

        staged = tmp_path / "staged.onnx"
        mf.add_constant(staged, 5.0)
        staged.replace(model_dir / "1" / "model.onnx")
        await repository.poll()
        assert float((await dataplane.infer(request)).outputs[0].data[0, 0]) == 5.0
        await repository.close()

    asyncio.run(scenario())
