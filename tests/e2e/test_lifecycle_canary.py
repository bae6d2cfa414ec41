"""Canary and shadow rollouts under load: a bad candidate is rolled back automatically while the
stable version keeps answering every request; a good one is promoted; a manual rollback returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import modelfactory as mf
import numpy as np
import tritonclient.http as httpclient
from click.testing import CliRunner
from lifecycleutil import lifecycle, row, wait_until
from loadgen import LoadGenerator, Send, add_constant_sender
from metricsutil import scrape, value
from serverctl import RunningServer, start_server

from inferd.cli import main

TIMEOUT_S = 90
BATCHING = "max_batch_size: 8\ndynamic_batching:\n  max_queue_delay_ms: 1\n"


def _gather_sender(server: RunningServer) -> Send:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)

    def send() -> tuple[str, Any]:
        tensor = httpclient.InferInput("INDEX", [1, 1], "INT64")
        tensor.set_data_from_numpy(np.array([[5]], dtype=np.int64))
        result = client.infer("g", [tensor])
        return result.get_response()["model_version"], float(result.as_numpy("OUTPUT0")[0, 0])

    return send


def _cli(server: RunningServer, *args: str) -> str:
    """The real `inferd models` command, in-process (a subprocess per call is slow on a busy machine)."""
    result = CliRunner().invoke(main, ["models", "--url", f"http://{server.http_url}", *args])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _answers_after(load: LoadGenerator, mark: list[int]) -> list[tuple[str, Any]]:
    """Answers to requests each client sent after ``mark`` (its one request in flight left out)."""
    return [
        answer for record, m in zip(load.snapshot(), mark, strict=True) for answer in record.answers[m + 1 :]
    ]


def _rolled_back(server: RunningServer, model: str) -> bool:
    candidate = row(server.http_url, model, "2") or {}
    return candidate.get("state") == "UNAVAILABLE" and "rolled back" in candidate.get("reason", "")


def test_config_canary_with_a_failing_candidate_rolls_back(tmp_path: Path) -> None:
    root = tmp_path / "models"
    config = (
        BATCHING
        + "warmup:\n  - data: zeros\n"
        + "rollout:\n  candidate: 2\n  canary_percent: 25\n  guard:\n    min_requests: 10\n"
    )
    mf.write_model(root, "g", lambda p: mf.gather_table(p, 10), version=1, config=config)
    # Version 2 warms up fine (index 0) but fails on the index clients send (5).
    mf.write_model(root, "g", lambda p: mf.gather_table(p, 3), version=2)
    server = start_server(root, tmp_path)
    try:
        assert row(server.http_url, "g", "2") == {
            "name": "g",
            "version": "2",
            "state": "READY",
            "reason": "canary candidate at 25%",
        }
        with LoadGenerator(lambda i: _gather_sender(server), threads=4) as load:
            wait_until(lambda: _rolled_back(server, "g"), TIMEOUT_S, "the automatic rollback")
            mark = load.marks()
            load.wait_for(lambda lg: lg.count_after(mark) >= 40, TIMEOUT_S, "answers after the rollback")
        # The candidate's failures were answered by the stable version: no client ever saw one.
        assert load.errors() == []
        assert set(load.answers()) == {("1", 7.5)}
        reason = (row(server.http_url, "g", "2") or {})["reason"]
        assert "candidate error rate" in reason
        status = lifecycle(server.http_url, "g")
        assert status["rollout"] is None and status["default_version"] == "1"
        assert status["counters"]["rollouts_started"] == 1 and status["counters"]["rollbacks"] == 1
        samples = scrape(server.http_url)  # the same decisions, counted in Prometheus metrics
        assert value(samples, "inferd_lifecycle_events_total", model="g", event="rollbacks") == 1
        assert value(samples, "inferd_lifecycle_events_total", model="g", event="rollouts_started") == 1
        assert any("rollout started (config.yaml)" in event for event in status["events"])
        assert any("rolled back" in event for event in status["events"])
        assert "rolled back" in server.log()
    finally:
        assert server.stop() == 0, server.log()


def test_api_canary_with_a_slow_candidate_rolls_back(tmp_path: Path) -> None:
    root = tmp_path / "models"
    mf.write_model(root, "m", lambda p: mf.slow(p, 1), version=1, config=BATCHING)
    mf.write_model(root, "m", lambda p: mf.slow(p, 150), version=2)
    # Policy latest 1: version 2 is not loaded until the rollout asks for it.
    (root / "m" / "config.yaml").write_text(BATCHING + "version_policy: {specific: [1]}\n")
    server = start_server(root, tmp_path)
    try:
        with LoadGenerator(lambda i: add_constant_sender(server.http_url, server.grpc_url, "m", i)) as load:
            load.wait_for(lambda lg: len(lg.answers()) >= 20, TIMEOUT_S, "answers from version 1")
            started = _cli(
                server,
                "rollout",
                "m",
                "--candidate",
                "2",
                "--percent",
                "20",
                "--min-requests",
                "10",
                "--max-latency-ratio",
                "3",
            )
            assert '"candidate_version": "2"' in started
            wait_until(lambda: _rolled_back(server, "m"), TIMEOUT_S, "the automatic rollback")
            mark = load.marks()
            load.wait_for(lambda lg: lg.count_after(mark) >= 40, TIMEOUT_S, "answers after the rollback")
        assert load.errors() == []
        assert {meaning for _, meaning in load.answers()} == {1.0}
        assert "p99" in (row(server.http_url, "m", "2") or {})["reason"]
        assert "m" in _cli(server, "list")
    finally:
        assert server.stop() == 0, server.log()


def test_shadow_rollout_with_disagreeing_outputs_rolls_back_without_touching_answers(tmp_path: Path) -> None:
    root = tmp_path / "models"
    config = BATCHING + (
        "rollout:\n  candidate: 2\n  canary_percent: 100\n  shadow: true\n"
        "  guard: {min_requests: 10, max_disagreement_rate: 0.0, max_latency_ratio: 1000}\n"
    )
    mf.write_model(root, "m", lambda p: mf.add_constant(p, 1.0), version=1, config=config)
    mf.write_model(root, "m", lambda p: mf.add_constant(p, 2.0), version=2)
    server = start_server(root, tmp_path)
    try:
        with LoadGenerator(lambda i: add_constant_sender(server.http_url, server.grpc_url, "m", i)) as load:
            wait_until(lambda: _rolled_back(server, "m"), TIMEOUT_S, "the automatic rollback")
            mark = load.marks()
            load.wait_for(lambda lg: lg.count_after(mark) >= 20, TIMEOUT_S, "answers after the rollback")
        assert load.errors() == []
        # Shadowed answers are compared, never returned.
        assert set(load.answers()) == {("1", 1.0)}
        assert "shadow outputs disagree" in (row(server.http_url, "m", "2") or {})["reason"]
    finally:
        assert server.stop() == 0, server.log()


def test_a_passing_canary_is_promoted_and_a_manual_rollback_returns(tmp_path: Path) -> None:
    root = tmp_path / "models"
    mf.write_model(root, "m", lambda p: mf.add_constant(p, 1.0), version=1, config=BATCHING)
    mf.write_model(root, "m", lambda p: mf.add_constant(p, 2.0), version=2)
    (root / "m" / "config.yaml").write_text(BATCHING + "version_policy: {specific: [1]}\n")
    server = start_server(root, tmp_path)
    try:
        with LoadGenerator(lambda i: add_constant_sender(server.http_url, server.grpc_url, "m", i)) as load:
            load.wait_for(lambda lg: len(lg.answers()) >= 20, TIMEOUT_S, "answers from version 1")
            _cli(
                server,
                "rollout",
                "m",
                "--candidate",
                "2",
                "--percent",
                "50",
                "--promote-after-requests",
                "30",
                "--max-latency-ratio",
                "1000",
            )
            wait_until(
                lambda: lifecycle(server.http_url, "m")["default_version"] == "2", TIMEOUT_S, "the promotion"
            )
            mark = load.marks()
            load.wait_for(lambda lg: lg.count_after(mark) >= 20, TIMEOUT_S, "answers after the promotion")
            after_promotion = _answers_after(load, mark)
            assert after_promotion and set(after_promotion) == {("2", 2.0)}

            assert "default version is now 1" in _cli(server, "rollback", "m")
            mark = load.marks()
            load.wait_for(lambda lg: lg.count_after(mark) >= 20, TIMEOUT_S, "answers after the rollback")
            after_rollback = _answers_after(load, mark)
            assert after_rollback and set(after_rollback) == {("1", 1.0)}
        assert load.errors() == []
        assert set(load.answers()) == {("1", 1.0), ("2", 2.0)}
        status = lifecycle(server.http_url, "m")
        assert any("promoted" in e for e in status["events"]) and any(
            "manual rollback" in e for e in status["events"]
        )
        assert status["counters"]["promotions"] == 1 and status["counters"]["manual_rollbacks"] == 1
        samples = scrape(server.http_url)
        assert value(samples, "inferd_lifecycle_events_total", model="m", event="promotions") == 1
        assert value(samples, "inferd_lifecycle_events_total", model="m", event="manual_rollbacks") == 1
    finally:
        assert server.stop() == 0, server.log()


def test_a_sticky_rollout_keeps_each_routing_key_on_one_version(tmp_path: Path) -> None:
    import tritonclient.grpc as grpcclient
    from httputil import post_json, request

    root = tmp_path / "models"
    mf.write_model(root, "m", lambda p: mf.add_constant(p, 1.0), version=1, config=BATCHING)
    mf.write_model(root, "m", lambda p: mf.add_constant(p, 2.0), version=2)
    (root / "m" / "config.yaml").write_text(BATCHING + "version_policy: {specific: [1]}\n")
    server = start_server(root, tmp_path)
    try:
        rollout = {"candidate": 2, "canary_percent": 50, "sticky": True, "guard": {"max_latency_ratio": 1000}}
        status, body = post_json(server.http_url, "/v2/repository/models/m/rollout", rollout)
        assert status == 200, body
        assert body["candidate_version"] == "2" and body["stable_version"] == "1"
        status, _, raw = request(server.http_url, "GET", "/v2/repository/models/m/rollout")
        assert status == 200 and json.loads(raw)["rollout"]["config"]["sticky"] is True
        status, again = post_json(server.http_url, "/v2/repository/models/m/rollout", rollout)
        assert status == 400 and "already has a rollout" in again["error"]
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        data = np.zeros((1, 4), dtype=np.float32)

        def version_for(key: str, use_grpc: bool) -> str:
            if use_grpc:
                tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
                tensor.set_data_from_numpy(data)
                result = grpc.infer("m", [tensor], parameters={"routing_key": key})
                return str(result.get_response().model_version)
            tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
            tensor.set_data_from_numpy(data)
            response = http.infer("m", [tensor], headers={"inferd-routing-key": key}).get_response()
            return str(response["model_version"])

        chosen = {}
        for key in (f"user-{i}" for i in range(16)):
            seen = {version_for(key, use_grpc=i % 2 == 1) for i in range(6)}
            assert len(seen) == 1, (key, seen)
            chosen[key] = seen.pop()
        assert set(chosen.values()) == {"1", "2"}
    finally:
        assert server.stop() == 0, server.log()
