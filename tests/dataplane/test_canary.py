"""Canary routing in the data plane, in-process with a small real runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from inferd.dataplane.dataplane import DataPlane
from inferd.model_config import ModelConfig
from inferd.repository.manager import ModelRepository
from inferd.runtimes.base import Signature
from inferd.types import InferRequest, Tensor, TensorSpec


class FactorRuntime:
    """Multiplies by the number in the model file; a file saying "broken" fails every execution."""

    def __init__(self, path: Path, config: ModelConfig) -> None:
        text = path.read_text()
        self.factor = None if text == "broken" else float(text)
        self.signature = Signature((TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), 8)
        self.instances = 1

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.factor is None:
            raise ValueError("broken model")
        return {"y": inputs["x"] * self.factor}

    def close(self) -> None:
        pass


def _repository(root: Path, candidate: str) -> ModelRepository:
    for version, text in (("1", "1"), ("2", candidate)):
        (root / "m" / version).mkdir(parents=True)
        (root / "m" / version / "model.onnx").write_text(text)
    (root / "m" / "config.yaml").write_text("version_policy: {specific: [1]}\n")
    return ModelRepository(root, FactorRuntime)


def _request(key: str | None = None) -> InferRequest:
    request = InferRequest("m", None, [Tensor("x", "FP32", np.ones((1, 4), dtype=np.float32))])
    if key is not None:
        request.parameters["routing_key"] = key
    return request


NEVER_JUDGED = {"min_requests": 1_000_000}


def test_a_failing_candidate_is_answered_by_stable_and_counted_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        repository = _repository(tmp_path, "broken")
        await repository.load_initial(None, exit_on_error=True)
        dataplane = DataPlane(repository)
        await repository.start_rollout("m", {"candidate": 2, "canary_percent": 50, "guard": NEVER_JUDGED})
        rollout = repository.entry("m").rollout
        assert rollout is not None
        responses = [await dataplane.infer(_request()) for _ in range(40)]
        assert {(r.version, float(r.outputs[0].data[0, 0])) for r in responses} == {("1", 1.0)}
        assert (rollout.candidate.requests, rollout.candidate.errors) == (20, 20)
        assert rollout.stable.requests == 40
        await repository.close()

    asyncio.run(scenario())


def test_shadow_compares_every_sampled_request_and_answers_from_stable(tmp_path: Path) -> None:
    async def scenario() -> None:
        repository = _repository(tmp_path, "2")
        await repository.load_initial(None, exit_on_error=True)
        dataplane = DataPlane(repository)
        config = {"candidate": 2, "canary_percent": 25, "shadow": True, "guard": NEVER_JUDGED}
        await repository.start_rollout("m", config)
        rollout = repository.entry("m").rollout
        assert rollout is not None
        responses = [await dataplane.infer(_request()) for _ in range(40)]
        assert {r.version for r in responses} == {"1"}
        await dataplane.close()  # the shadow copies finish
        assert (rollout.shadow_compared, rollout.shadow_disagreed) == (10, 10)
        await repository.close()

    asyncio.run(scenario())


def test_manual_promotion_and_rollback_of_a_rollout(tmp_path: Path) -> None:
    async def scenario() -> None:
        from inferd.errors import InvalidRequest

        repository = _repository(tmp_path, "2")
        await repository.load_initial(None, exit_on_error=True)
        dataplane = DataPlane(repository)
        with pytest.raises(InvalidRequest, match="no rollout to promote"):
            await dataplane.control.promote("m")
        await repository.start_rollout("m", {"candidate": 2, "canary_percent": 10, "guard": NEVER_JUDGED})
        assert await dataplane.control.promote("m") == "2"
        assert {(await dataplane.infer(_request())).version for _ in range(10)} == {"2"}
        assert dataplane.control.rollout_status("m") is None
        # Back to version 1 in one call: the previous default, still loaded.
        assert await dataplane.control.rollback("m") == "1"
        assert {(await dataplane.infer(_request())).version for _ in range(10)} == {"1"}
        await repository.close()

    asyncio.run(scenario())


def test_sticky_keys_and_explicit_versions(tmp_path: Path) -> None:
    async def scenario() -> None:
        repository = _repository(tmp_path, "2")
        await repository.load_initial(None, exit_on_error=True)
        dataplane = DataPlane(repository)
        config = {"candidate": 2, "canary_percent": 50, "sticky": True, "guard": NEVER_JUDGED}
        await repository.start_rollout("m", config)
        for key in ("alice", "bob", "carol", "dave"):
            versions = {(await dataplane.infer(_request(key))).version for _ in range(5)}
            assert len(versions) == 1
        # A request naming a version is never redirected.
        pinned = InferRequest("m", "1", [Tensor("x", "FP32", np.ones((1, 4), dtype=np.float32))])
        assert {(await dataplane.infer(pinned)).version for _ in range(10)} == {"1"}
        await repository.close()

    asyncio.run(scenario())


def test_a_config_rollout_follows_edits_without_reloading(tmp_path: Path) -> None:
    async def scenario() -> None:
        repository = _repository(tmp_path, "2")
        config = tmp_path / "m" / "config.yaml"
        guard = "guard: {min_requests: 1000000}"
        config.write_text(f"rollout: {{candidate: 2, canary_percent: 0, {guard}}}\n")
        await repository.load_initial(None, exit_on_error=True)
        dataplane = DataPlane(repository)
        handles = dict(repository.entry("m").served)
        assert {(await dataplane.infer(_request())).version for _ in range(10)} == {"1"}

        config.write_text(f"rollout: {{candidate: 2, canary_percent: 100, {guard}}}\n")
        await repository.poll()
        assert repository.entry("m").served == handles  # routing keys changed: nothing reloaded
        assert {(await dataplane.infer(_request())).version for _ in range(10)} == {"2"}

        config.write_text("max_batch_size: 8\n")  # the rollout section removed: it is aborted
        await repository.poll()
        assert {(await dataplane.infer(_request())).version for _ in range(10)} == {"1"}
        rows = {row.get("version"): row for row in await repository.index()}
        assert rows["2"]["reason"] == "rolled back: rollout removed from config.yaml"
        await repository.close()

    asyncio.run(scenario())
