"""The lifecycle manager in-process, with a small real runtime whose executions can be held."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from inferd.errors import InvalidRequest, ModelLoadError, NotFound, Unavailable
from inferd.model_config import ModelConfig
from inferd.repository.manager import ModelRepository
from inferd.runtimes.base import Signature
from inferd.types import TensorSpec

# Executions wait while this is clear, so requests can be kept queued or running on purpose.
GATE = threading.Event()


class FactorRuntime:
    """Multiplies its input by the number written in the model file; "broken" files fail to run."""

    def __init__(self, path: Path, config: ModelConfig) -> None:
        text = path.read_text()
        if text == "corrupt":
            raise ModelLoadError(f"{path}: cannot parse")
        self.broken = text == "broken"
        self.factor = 0.0 if self.broken else float(text)
        self.signature = Signature((TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), 8)
        self.instances = 1
        self.closed = False

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        GATE.wait(10)
        if self.broken:
            raise ValueError("broken model")
        return {"y": inputs["x"] * self.factor}

    def close(self) -> None:
        self.closed = True


def _write(root: Path, version: int, text: str, config: str | None = None) -> None:
    directory = root / "m" / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_text(text)
    if config is not None:
        (root / "m" / "config.yaml").write_text(config)


def _x() -> dict[str, np.ndarray]:
    return {"x": np.ones((1, 4), dtype=np.float32)}


@pytest.fixture(autouse=True)
def _open_gate() -> None:
    GATE.set()


def test_queued_requests_finish_on_the_old_version_after_a_swap(tmp_path: Path) -> None:
    async def scenario() -> None:
        _write(tmp_path, 1, "1")
        repository = ModelRepository(tmp_path, FactorRuntime)
        await repository.load_initial(None, exit_on_error=True)
        old = repository.get("m")
        GATE.clear()
        queued = [asyncio.ensure_future(old.batcher.infer(_x(), 1)) for _ in range(3)]
        await asyncio.sleep(0)  # one loop turn: all three are queued
        assert old.batcher.pending == 3
        _write(tmp_path, 2, "2")
        await repository.load("m")  # no warm-up configured, so it needs no execution
        new = repository.get("m")
        assert new.version == "2" and new is not old
        # Switched while the old version still holds its requests.
        assert old.batcher.pending >= 1 and not any(future.done() for future in queued)
        GATE.set()
        for result in await asyncio.gather(*queued):
            np.testing.assert_array_equal(result["y"], np.ones((1, 4)))
        np.testing.assert_array_equal((await new.batcher.infer(_x(), 1))["y"], np.full((1, 4), 2.0))
        await asyncio.sleep(0)
        await repository.close()
        assert old.runtime.closed  # type: ignore[attr-defined]
        rows = {row.get("version"): row for row in await repository.index()}
        assert rows["1"]["state"] == "UNAVAILABLE" and rows["1"]["reason"] == "unloaded"

    asyncio.run(scenario())


def test_a_failed_load_keeps_the_serving_version_and_is_not_retried_until_the_files_change(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        _write(tmp_path, 1, "1", config="warmup:\n  - batch_size: 1\n")
        repository = ModelRepository(tmp_path, FactorRuntime)
        await repository.load_initial(None, exit_on_error=True)
        serving = repository.get("m")
        _write(tmp_path, 2, "broken")
        await repository.poll()
        assert repository.get("m") is serving
        failed = next(r for r in await repository.index() if r.get("version") == "2")
        assert failed["state"] == "UNAVAILABLE" and "warm-up failed" in failed["reason"]
        events = len(repository.entry("m").events)
        await repository.poll()  # same files: no second attempt
        assert len(repository.entry("m").events) == events
        _write(tmp_path, 2, "3")
        await repository.poll()
        assert repository.get("m").version == "2"
        await repository.close()

    asyncio.run(scenario())


def test_unload_drains_then_refuses_and_removed_models_go_away(tmp_path: Path) -> None:
    async def scenario() -> None:
        _write(tmp_path, 1, "1")
        repository = ModelRepository(tmp_path, FactorRuntime)
        await repository.load_initial(None, exit_on_error=True)
        model = repository.get("m")
        GATE.clear()
        queued = asyncio.ensure_future(model.batcher.infer(_x(), 1))
        await asyncio.sleep(0)
        unloading = asyncio.ensure_future(repository.unload("m"))
        for _ in range(100):  # a few loop turns: the unload takes the lock and unpublishes the model
            if repository.entry("m").default is None:
                break
            await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="has no available versions \(not ready: unloaded\)"):
            repository.get("m")
        assert not unloading.done()  # still waiting for the queued request
        GATE.set()
        await unloading
        np.testing.assert_array_equal((await queued)["y"], np.ones((1, 4)))
        with pytest.raises(NotFound):
            repository.get("m", "1")
        await repository.close()

    asyncio.run(scenario())


def test_initial_load_reports_the_failing_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        _write(tmp_path, 1, "corrupt")
        repository = ModelRepository(tmp_path, FactorRuntime)
        with pytest.raises(ModelLoadError, match="cannot parse"):
            await repository.load_initial(None, exit_on_error=True)
        relaxed = ModelRepository(tmp_path, FactorRuntime)
        await relaxed.load_initial(None, exit_on_error=False)
        assert not relaxed.all_ready()
        with pytest.raises(Unavailable, match="cannot parse"):
            relaxed.get("m")

    asyncio.run(scenario())


def test_manual_rollback_pins_the_previous_version_until_a_newer_one_arrives(tmp_path: Path) -> None:
    async def scenario() -> None:
        from inferd.errors import InvalidRequest

        _write(tmp_path, 1, "1")
        repository = ModelRepository(tmp_path, FactorRuntime)
        await repository.load_initial(None, exit_on_error=True)
        with pytest.raises(InvalidRequest, match="no earlier version"):
            await repository.rollback("m")
        _write(tmp_path, 2, "2")
        await repository.poll()
        assert repository.get("m").version == "2"
        assert await repository.rollback("m") == "1"  # version 1 was unloaded: loaded again
        assert repository.get("m").version == "1"
        await repository.poll()  # nothing new on disk: the pin holds
        assert repository.get("m").version == "1"
        _write(tmp_path, 3, "3")
        await repository.poll()
        assert repository.get("m").version == "3"
        assert repository.lifecycle("m")["pinned_version"] is None
        await repository.close()

    asyncio.run(scenario())


def test_a_bad_config_override_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        _write(tmp_path, 1, "1", config="max_batch_size: 4\n")
        repository = ModelRepository(tmp_path, FactorRuntime)
        await repository.load_initial(None, exit_on_error=True)
        serving = repository.get("m")
        # The client's own override is the client's error: 400, not 500.
        with pytest.raises(InvalidRequest, match="config override: 'max_batch_size'"):
            await repository.load("m", '{"max_batch_size": -1}')
        assert repository.get("m") is serving
        assert repository.entry("m").config_override is None  # later reloads and rollbacks unaffected
        _write(tmp_path, 2, "2")
        await repository.load("m")  # the good config.yaml still applies
        assert repository.get("m").version == "2"
        await repository.close()

    asyncio.run(scenario())


def test_a_rollout_whose_candidate_fails_to_load_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        _write(tmp_path, 1, "1", config="version_policy: {specific: [1]}\n")
        _write(tmp_path, 2, "corrupt")
        repository = ModelRepository(tmp_path, FactorRuntime)
        await repository.load_initial(None, exit_on_error=True)
        with pytest.raises(ModelLoadError, match="cannot parse"):
            await repository.start_rollout("m", {"candidate": 2})
        entry = repository.entry("m")
        assert entry.rollout is None and entry.held_back == set() and repository.get("m").version == "1"
        await repository.close()

    asyncio.run(scenario())
