"""Sequence batching with implicit state, over real tritonclient HTTP and gRPC.

The models are ONNX accumulators built in the test (tests/sequencemodels.py): the running sum lives
in inferd (state STATE_IN/STATE_OUT), START/READY/CORRID are fed as the config declares them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import modelfactory as mf
import numpy as np
import pytest
import requests
import sequencemodels as sm
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

IDLE_US = 300_000
SWAP_IDLE_US = 50_000_000


def _repository(root: Path) -> Path:
    def write(name: str, config: str, string_ids: bool = False) -> None:
        mf.write_model(root, name, partial(sm.accumulator, string_ids=string_ids), config=config)

    write("acc_direct", sm.accumulator_config("direct: {}", max_batch_size=4, instances=2))
    # Waits up to 2 s for 4 sequences' steps: the concurrent test's steps run 4 at a time.
    write(
        "acc_oldest",
        sm.accumulator_config(
            "oldest: {max_candidate_sequences: 8, max_queue_delay_microseconds: 2000000}",
            max_batch_size=4,
        ),
    )
    write("acc_strings", sm.accumulator_config("direct: {}", max_batch_size=4, string_ids=True), True)
    write("acc_one", sm.accumulator_config("direct: {}", max_batch_size=1))
    write(
        "acc_backlog", sm.accumulator_config("direct: {}", max_batch_size=1, extra="max_sequence_backlog: 1")
    )
    write("acc_idle", sm.accumulator_config("direct: {}", max_batch_size=1, idle_us=IDLE_US))
    write("acc_swap", sm.accumulator_config("direct: {}", max_batch_size=2))
    mf.write_model(root, "simple_sequence", sm.simple_sequence, config=sm.SIMPLE_SEQUENCE_CONFIG)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repository(tmp_path_factory.mktemp("sequence-models"))


@pytest.fixture(scope="module")
def server(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        root,
        tmp_path_factory.mktemp("sequence-server"),
        "--model-control",
        "poll",
        "--repository-poll-interval",
        "0.2",
    )
    yield running
    assert running.stop() == 0, running.log()


class Client:
    """One protocol's client, with a sequence step as tritonclient users write it."""

    def __init__(self, server: RunningServer, protocol: str) -> None:
        self.module: Any = httpclient if protocol == "http" else grpcclient
        url = server.http_url if protocol == "http" else server.grpc_url
        self.client: Any = self.module.InferenceServerClient(url)

    def step(self, model: str, value: int, sequence_id: int | str, **flags: bool) -> tuple[int, Any]:
        tensor = self.module.InferInput("INPUT", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[value]], np.int32))
        result = self.client.infer(model, [tensor], sequence_id=sequence_id, **flags)
        return int(result.as_numpy("OUTPUT")[0, 0]), result.as_numpy("SEQ")[0, 0]


def _refused(call: Callable[[], object], *phrases: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    message = str(caught.value)
    assert "400" in message or "INVALID_ARGUMENT" in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


def _run_sequence(client: Client, model: str, sequence_id: int | str, values: list[int]) -> None:
    total = 0
    for index, value in enumerate(values):
        total += value
        flags = {"sequence_start": index == 0, "sequence_end": index == len(values) - 1}
        answer, fed_id = client.step(model, value, sequence_id, **flags)
        assert answer == total, (sequence_id, index)
        expected_id = str(sequence_id).encode() if model == "acc_strings" else sequence_id
        assert fed_id == expected_id


def test_config_shows_sequence_batching_and_hides_control_and_state_tensors(server: RunningServer) -> None:
    http = Client(server, "http").client
    config = http.get_model_config("acc_direct")
    assert [tensor["name"] for tensor in config["input"]] == ["INPUT"]
    assert [tensor["name"] for tensor in config["output"]] == ["OUTPUT", "SEQ"]
    batching = config["sequence_batching"]
    assert "direct" in batching
    assert [entry["name"] for entry in batching["control_input"]] == ["START", "READY", "CORRID"]
    assert batching["state"][0]["input_name"] == "STATE_IN"
    grpc = Client(server, "grpc").client
    message = grpc.get_model_config("acc_oldest").config.sequence_batching
    assert message.oldest.max_candidate_sequences == 8
    assert (
        message.control_input[2].control[0].kind
        == message.control_input[2].control[0].CONTROL_SEQUENCE_CORRID
    )
    assert [i.name for i in grpc.get_model_metadata("acc_direct").inputs] == ["INPUT"]
    assert "sequence" in http.get_server_metadata()["extensions"]


def test_interleaved_sequences_from_threads_each_keep_their_own_sum(server: RunningServer) -> None:
    def one(index: int) -> None:
        client = Client(server, "http" if index % 2 else "grpc")
        values = [int(v) for v in np.random.default_rng(index).integers(-50, 50, 12)]
        _run_sequence(client, "acc_direct", 5000 + index, values)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(one, range(6)))  # 6 sequences in the 8 slots (4 rows x 2 instances)


def test_oldest_batches_one_step_of_many_sequences_together(server: RunningServer) -> None:
    def one(index: int) -> None:
        protocol = "grpc" if index % 2 else "http"
        # tritonclient's gRPC sends ids as int64; REST carries the whole uint64 range.
        sequence_id = 40 + index if protocol == "grpc" else 2**63 + index
        _run_sequence(Client(server, protocol), "acc_oldest", sequence_id, [index + 1] * 8)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(4)))
    stats = Client(server, "http").client.get_inference_statistics("acc_oldest")["model_stats"][0]
    assert stats["inference_count"] == 32
    assert stats["execution_count"] < 32
    assert max(batch["batch_size"] for batch in stats["batch_stats"]) > 1


def test_string_sequence_ids_over_a_grpc_stream(server: RunningServer) -> None:
    answers: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put(error or result))
    sequences: dict[int | str, list[int]] = {"alpha": [3, 4, 5], "beta-7f3e": [10, -1, 2], 77: [1, 1, 1]}
    try:
        for step in range(3):
            for sequence_id, values in sequences.items():
                tensor = grpcclient.InferInput("INPUT", [1, 1], "INT32")
                tensor.set_data_from_numpy(np.array([[values[step]]], np.int32))
                client.async_stream_infer(
                    "acc_strings",
                    [tensor],
                    request_id=f"{sequence_id}|{step}",
                    sequence_id=sequence_id,
                    sequence_start=step == 0,
                    sequence_end=step == 2,
                )
        results = [answers.get(timeout=30) for _ in range(9)]
    finally:
        client.stop_stream()
    for result in results:
        assert not isinstance(result, InferenceServerException), result
        name, step = result.get_response().id.split("|")
        sequence_id: int | str = int(name) if name.isdigit() else name
        assert result.as_numpy("OUTPUT")[0, 0] == sum(sequences[sequence_id][: int(step) + 1])
        assert result.as_numpy("SEQ")[0, 0] == name.encode()


def test_bad_steps_get_a_400_naming_the_sequence(server: RunningServer) -> None:
    http, grpc = Client(server, "http"), Client(server, "grpc")
    _refused(lambda: http.step("acc_direct", 1, 404), "sequence 404 is not active")
    _refused(lambda: grpc.step("acc_direct", 1, 405), "sequence 405 is not active")
    assert http.step("acc_direct", 5, 31, sequence_start=True)[0] == 5
    _refused(lambda: http.step("acc_direct", 1, 31, sequence_start=True), "sequence 31 is still active")
    _refused(lambda: grpc.step("acc_direct", 1, "text-id", sequence_start=True), "takes integer sequence ids")
    assert grpc.step("acc_direct", 2, 31, sequence_end=True)[0] == 7
    _refused(lambda: http.step("acc_direct", 1, 31), "sequence 31 has ended")
    # The id is free again: a new sequence with its own sum.
    assert http.step("acc_direct", 4, 31, sequence_start=True, sequence_end=True)[0] == 4
    _refused(lambda: http.step("acc_direct", 1, 0), "needs a non-zero 'sequence_id'")

    url = f"http://{server.http_url}/v2/models/acc_direct/infer"
    row = {"name": "INPUT", "datatype": "INT32", "shape": [1, 1], "data": [1]}
    for parameters, phrase in [
        ({"sequence_id": 9, "sequence_start": "yes"}, "'sequence_start' must be a boolean"),
        ({"sequence_id": -5}, "not an unsigned 64-bit integer"),
        ({"sequence_id": 1.5}, "must be an unsigned integer or a string"),
        ({"sequence_id": "x" * 300, "sequence_start": True}, "at most 256 characters"),
    ]:
        answer = requests.post(url, json={"inputs": [row], "parameters": parameters}, timeout=10)
        assert answer.status_code == 400 and phrase in answer.json()["error"], answer.text
    two_rows = {"name": "INPUT", "datatype": "INT32", "shape": [2, 1], "data": [1, 2]}
    body = {"inputs": [two_rows], "parameters": {"sequence_id": 8, "sequence_start": True}}
    answer = requests.post(url, json=body, timeout=10)
    assert answer.status_code == 400 and "must have batch size 1" in answer.json()["error"]


def test_a_start_beyond_the_slots_is_refused_until_one_frees(server: RunningServer) -> None:
    http = Client(server, "http")
    http.step("acc_one", 1, 1, sequence_start=True)
    _refused(lambda: http.step("acc_one", 1, 2, sequence_start=True), "cannot start sequence 2", "slots")
    http.step("acc_one", 1, 1, sequence_end=True)
    assert http.step("acc_one", 6, 2, sequence_start=True, sequence_end=True)[0] == 6


def test_a_backlogged_start_waits_for_a_slot(server: RunningServer) -> None:
    http = Client(server, "http")
    http.step("acc_backlog", 1, 1, sequence_start=True)
    waiting: queue.Queue[tuple[int, Any]] = queue.Queue()
    thread = threading.Thread(
        target=lambda: waiting.put(Client(server, "grpc").step("acc_backlog", 9, 2, sequence_start=True))
    )
    thread.start()
    lifecycle = f"http://{server.http_url}/v2/repository/models/acc_backlog/lifecycle"
    deadline = time.monotonic() + 30
    while requests.get(lifecycle, timeout=10).json()["versions"]["1"]["pending_requests"] != 1:
        assert time.monotonic() < deadline, "sequence 2 never reached the backlog"
        time.sleep(0.05)
    # Sequence 2 holds the one place in the backlog: a third start is refused at once.
    _refused(
        lambda: http.step("acc_backlog", 1, 3, sequence_start=True),
        "cannot start sequence 3",
        "1 wait for one (max_sequence_backlog)",
    )
    assert waiting.empty()
    http.step("acc_backlog", 1, 1, sequence_end=True)
    thread.join(30)
    assert waiting.get(timeout=1)[0] == 9
    assert http.step("acc_backlog", 1, 2, sequence_end=True)[0] == 10


def test_an_idle_sequence_is_freed_after_max_sequence_idle(server: RunningServer) -> None:
    http = Client(server, "http")
    http.step("acc_idle", 1, 100, sequence_start=True)
    deadline = time.monotonic() + 30
    while True:  # the one slot frees once sequence 100 has been idle for IDLE_US
        try:
            http.step("acc_idle", 1, 101, sequence_start=True)
            break
        except InferenceServerException as exc:
            assert "cannot start sequence 101" in str(exc)
            assert time.monotonic() < deadline, "the idle sequence was never freed"
            time.sleep(0.05)
    _refused(
        lambda: http.step("acc_idle", 1, 100), "sequence 100 was freed", "max_sequence_idle_microseconds"
    )


def test_a_hot_swap_drops_live_sequences_and_says_so(server: RunningServer, root: Path) -> None:
    http = Client(server, "http")
    assert http.step("acc_swap", 3, 12, sequence_start=True)[0] == 3
    config = sm.accumulator_config("direct: {}", max_batch_size=2, idle_us=SWAP_IDLE_US)
    (root / "acc_swap" / "config.yaml").write_text(config)  # poll mode reloads the version

    def idle_us() -> int:
        batching = http.client.get_model_config("acc_swap")["sequence_batching"]
        return int(batching["max_sequence_idle_microseconds"])

    deadline = time.monotonic() + 30
    while idle_us() != SWAP_IDLE_US:
        assert time.monotonic() < deadline, "the changed config was never loaded"
        time.sleep(0.1)
    _refused(lambda: http.step("acc_swap", 1, 12), "sequence 12 is not active", "reloaded or replaced")
    assert http.step("acc_swap", 2, 12, sequence_start=True, sequence_end=True)[0] == 2


def test_a_sequence_model_refuses_a_canary_rollout(server: RunningServer) -> None:
    url = f"http://{server.http_url}/v2/repository/models/acc_direct/rollout"
    answer = requests.post(url, json={"candidate": 2}, timeout=10)
    assert answer.status_code == 400 and "cannot have a canary rollout" in answer.json()["error"]
