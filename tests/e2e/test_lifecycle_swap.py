"""Hot swap under continuous load: a new version loads beside the old, warms up, then takes over
with no failed or wrong answer; a broken version never takes traffic."""

from __future__ import annotations

from pathlib import Path

import modelfactory as mf
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from lifecycleutil import index, lifecycle, row, wait_until, write_version
from loadgen import LoadGenerator, add_constant_sender
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

CONFIG = """
max_batch_size: 8
dynamic_batching:
  max_queue_delay_ms: 1
warmup:
  - batch_size: 1
    data: random
  - batch_size: 8
    data: zeros
"""
TIMEOUT_S = 60


def _repository(root: Path) -> Path:
    return mf.write_model(root, "m", lambda p: mf.add_constant(p, 1.0), config=CONFIG)


def _load(server: RunningServer) -> LoadGenerator:
    return LoadGenerator(lambda i: add_constant_sender(server.http_url, server.grpc_url, "m", i), threads=4)


def _assert_switched_cleanly(load: LoadGenerator, old: float, new: float) -> None:
    """No errors, no wrong answers, and each client saw old answers then only new ones."""
    assert load.errors() == []
    for record in load.snapshot():
        meanings = [meaning for _, meaning in record.answers]
        assert None not in meanings, "a wrong answer"
        assert set(meanings) <= {old, new}
        if new in meanings:
            first_new = meanings.index(new)
            assert all(m == new for m in meanings[first_new:]), "an old answer after a new one"
        for version, meaning in record.answers:
            assert meaning == float(version), (version, meaning)


def test_poll_mode_swaps_a_new_version_under_load(tmp_path: Path) -> None:
    model_dir = _repository(tmp_path / "models")
    server = start_server(
        tmp_path / "models", tmp_path, "--model-control", "poll", "--repository-poll-interval", "0.2"
    )
    try:
        with _load(server) as load:
            load.wait_for(lambda lg: len(lg.answers()) >= 40, TIMEOUT_S, "answers from version 1")
            write_version(model_dir, 2, lambda p: mf.add_constant(p, 2.0))
            load.wait_for(
                lambda lg: all(r.answers and r.answers[-1][1] == 2.0 for r in lg.snapshot()),
                TIMEOUT_S,
                "every client to get version 2's answers",
            )
            mark = load.marks()
            load.wait_for(lambda lg: lg.count_after(mark) >= 40, TIMEOUT_S, "more answers")
        _assert_switched_cleanly(load, 1.0, 2.0)
        wait_until(
            lambda: (row(server.http_url, "m", "1") or {}).get("state") == "UNAVAILABLE",
            TIMEOUT_S,
            "version 1 to be unloaded",
        )
        assert row(server.http_url, "m", "2") == {
            "name": "m",
            "version": "2",
            "state": "READY",
            "reason": "default version",
        }
    finally:
        assert server.stop() == 0, server.log()


def test_requests_queued_on_the_old_version_finish_on_it(tmp_path: Path) -> None:
    """A slow model without batching: at the switch several requests wait in version 1's queue."""
    root = tmp_path / "models"
    config = "max_batch_size: 0\nwarmup:\n  - batch_size: 1\n"
    model_dir = mf.write_model(root, "m", lambda p: mf.slow(p, 20, plus=1.0), config=config)
    server = start_server(root, tmp_path, "--model-control", "poll", "--repository-poll-interval", "0.1")
    try:
        with LoadGenerator(
            lambda i: add_constant_sender(server.http_url, server.grpc_url, "m", i), 6
        ) as load:
            wait_until(
                lambda: lifecycle(server.http_url, "m")["versions"]["1"]["pending_requests"] >= 3,
                TIMEOUT_S,
                "requests queued on version 1",
            )
            write_version(model_dir, 2, lambda p: mf.slow(p, 20, plus=2.0))
            load.wait_for(
                lambda lg: all(r.answers and r.answers[-1][1] == 2.0 for r in lg.snapshot()),
                TIMEOUT_S,
                "every client to get version 2's answers",
            )
        _assert_switched_cleanly(load, 1.0, 2.0)
    finally:
        assert server.stop() == 0, server.log()


def test_load_api_swaps_a_replaced_version_under_load(tmp_path: Path) -> None:
    model_dir = _repository(tmp_path / "models")
    server = start_server(tmp_path / "models", tmp_path, "--model-control", "explicit", "--load-model", "m")
    try:
        with _load(server) as load:
            load.wait_for(lambda lg: len(lg.answers()) >= 40, TIMEOUT_S, "answers from version 1")
            # Version 1 replaced in place by a model adding 5: same version number, new files.
            write_version(model_dir, 1, lambda p: mf.add_constant(p, 5.0))
            httpclient.InferenceServerClient(server.http_url).load_model("m")
            # The load returns after the switch: every request sent from now on gets the new model.
            mark = load.marks()
            load.wait_for(lambda lg: lg.count_after(mark) >= 40, TIMEOUT_S, "answers after the load")
        assert load.errors() == []
        for record, seen_before in zip(load.snapshot(), mark, strict=True):
            meanings = [meaning for _, meaning in record.answers]
            assert set(meanings) <= {1.0, 5.0}
            # At most the request in flight during the load call may still be answered by the old files.
            assert all(m == 5.0 for m in meanings[seen_before + 1 :])
            assert 5.0 in meanings
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        (mf.corrupt, "ONNX Runtime cannot load the model"),
        (mf.fails_below_batch_3, "warm-up failed"),
    ],
    ids=["corrupt-onnx", "fails-warm-up"],
)
def test_a_broken_version_never_takes_traffic(
    tmp_path: Path, broken: mf.Callable[[Path], None], reason: str
) -> None:
    model_dir = _repository(tmp_path / "models")
    server = start_server(
        tmp_path / "models", tmp_path, "--model-control", "poll", "--repository-poll-interval", "0.2"
    )
    try:
        with _load(server) as load:
            load.wait_for(lambda lg: len(lg.answers()) >= 20, TIMEOUT_S, "answers from version 1")
            write_version(model_dir, 2, broken)
            wait_until(
                lambda: (row(server.http_url, "m", "2") or {}).get("state") == "UNAVAILABLE",
                TIMEOUT_S,
                "version 2 to fail",
            )
            mark = load.marks()
            load.wait_for(lambda lg: lg.count_after(mark) >= 40, TIMEOUT_S, "answers after the failure")
        assert load.errors() == []
        assert {meaning for _, meaning in load.answers()} == {1.0}
        failed = row(server.http_url, "m", "2")
        assert failed is not None and reason in failed["reason"]
        # Named relative to the repository: the server's absolute paths are not shown to clients.
        assert "m/2/model.onnx" in failed["reason"] or "warm-up" in failed["reason"]
        assert str(model_dir) not in failed["reason"]
        assert row(server.http_url, "m", "1") == {
            "name": "m",
            "version": "1",
            "state": "READY",
            "reason": "default version",
        }
        assert "failed to load" in server.log()
    finally:
        assert server.stop() == 0, server.log()


def test_a_failed_load_api_call_reports_and_keeps_serving(tmp_path: Path) -> None:
    model_dir = _repository(tmp_path / "models")
    server = start_server(tmp_path / "models", tmp_path, "--model-control", "explicit", "--load-model", "m")
    try:
        write_version(model_dir, 2, mf.corrupt)
        with _load(server) as load:
            load.wait_for(lambda lg: len(lg.answers()) >= 20, TIMEOUT_S, "answers from version 1")
            with pytest.raises(InferenceServerException, match="cannot load the model"):
                grpcclient.InferenceServerClient(server.grpc_url).load_model("m")
            # A broken config override fails the same way and also leaves version 1 serving.
            with pytest.raises(InferenceServerException, match="'max_batch_size'"):
                httpclient.InferenceServerClient(server.http_url).load_model(
                    "m", config='{"max_batch_size": -1}'
                )
            mark = load.marks()
            load.wait_for(lambda lg: lg.count_after(mark) >= 20, TIMEOUT_S, "answers after the failures")
        assert load.errors() == []
        assert {meaning for _, meaning in load.answers()} == {1.0}
        assert any(r.get("version") == "2" and r["state"] == "UNAVAILABLE" for r in index(server.http_url))
    finally:
        assert server.stop() == 0, server.log()
