"""inferd on Ray Serve, on a real two-node Ray cluster: replicas on both nodes answer unchanged
tritonclient calls over REST and gRPC, a killed replica is replaced, and Ray autoscales 1 -> 2."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pymodels
import pytest
import raycluster
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

pytestmark = [
    pytest.mark.skipif(raycluster.can_run() is not None, reason=str(raycluster.can_run())),
    # Starting two Ray nodes and deploying takes a minute or more, several on a busy machine.
    pytest.mark.timeout(900),
]

# Says which Ray node ran it: requests prove where they were served.
WHERE = """
import os
import time
import numpy as np
from inferd import Model, Tensor

class Where(Model):
    inputs = [Tensor("INPUT0", "FP32", [-1, 4])]
    outputs = [
        Tensor("OUTPUT0", "FP32", [-1, 4]),
        Tensor("NODE", "BYTES", [-1]),
        Tensor("PID", "INT64", [-1]),
    ]
    max_batch_size = 16

    def load(self, path):
        import ray
        self.node = ray.get_runtime_context().get_node_id().encode()

    def predict(self, inputs):
        time.sleep(0.01)  # long enough for requests to pile up under load (autoscaling test)
        x = inputs["INPUT0"]
        return {
            "OUTPUT0": x + np.float32(1),
            "NODE": np.array([self.node] * len(x), dtype=object),
            "PID": np.full(len(x), os.getpid(), dtype=np.int64),
        }
"""
DEPLOYMENT = "InferdReplica"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[raycluster.RayCluster]:
    import ray

    running = raycluster.RayCluster(tmp_path_factory.mktemp("ray"))
    try:
        running.start()
        ray.init(address=running.address, log_to_driver=False)
        yield running
    finally:
        ray.shutdown()
        running.stop()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("models")
    pymodels.write(repo, "where", WHERE)
    return repo


def _deploy(cluster: raycluster.RayCluster, repository: Path, *options: str) -> tuple[int, int]:
    """Deploy with a proxy on every node listening on all its addresses; returns (http, grpc) ports."""
    http_port, grpc_port = cluster.http_port, cluster.grpc_port
    command = [
        sys.executable, "-m", "inferd", "ray", "deploy", str(repository), "--address", cluster.address,
        "--host", "0.0.0.0", "--http-port", str(http_port), "--grpc-port", str(grpc_port), *options,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=cluster.env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return http_port, grpc_port


def _replica_states() -> dict[str, int]:
    from ray import serve

    app = serve.status().applications.get("inferd")
    if app is None or DEPLOYMENT not in app.deployments:
        return {}
    return {str(state): count for state, count in app.deployments[DEPLOYMENT].replica_states.items()}


def _running() -> int:
    return sum(count for state, count in _replica_states().items() if state.endswith("RUNNING"))


def _wait_for(condition: Any, timeout_s: float, what: str, load: _Load | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            answered = f"; answered, failed: {load.counts()}" if load is not None else ""
            raise AssertionError(f"timed out waiting for {what}; replicas: {_replica_states()}{answered}")
        time.sleep(0.5)


def _infer(client: Any, module: Any, value: float) -> bytes:
    return _where(client, module, value)[0]


def _where(client: Any, module: Any, value: float) -> tuple[bytes, int]:
    """(node id, pid) of the replica that answered."""
    data = np.full((1, 4), value, dtype=np.float32)
    tensor = module.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer("where", [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data + 1)
    return result.as_numpy("NODE")[0], int(result.as_numpy("PID")[0])


class _Load:
    """Requests from a few threads until stopped; counts answers and failures as they happen."""

    def __init__(self, url: str, threads: int) -> None:
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(url,)) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self, url: str) -> None:
        client = httpclient.InferenceServerClient(url, network_timeout=60)
        while not self._stop.is_set():
            try:
                _infer(client, httpclient, 1.0)
                with self._lock:
                    self.ok += 1
            except Exception as exc:  # counted: the test decides which failures are allowed
                with self._lock:
                    self.failed.append(str(exc))

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.ok, len(self.failed)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_replicas_on_both_nodes_serve_rest_and_grpc_and_survive_a_killed_replica(
    cluster: raycluster.RayCluster, repository: Path
) -> None:
    import ray

    http_port, grpc_port = _deploy(cluster, repository, "--replicas", "2")
    _wait_for(lambda: _running() == 2, 120, "2 running replicas")
    nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(nodes) == 2

    # Each node's proxy (as behind a cloud load balancer) prefers the replica on its own node.
    served_by: set[bytes] = set()
    for address in (raycluster.HEAD_IP, raycluster.NODE_IP):
        rest = httpclient.InferenceServerClient(f"{address}:{http_port}")
        grpc = grpcclient.InferenceServerClient(f"{address}:{grpc_port}")
        assert rest.is_model_ready("where") and grpc.is_model_ready("where")
        for i in range(10):
            served_by.add(_infer(rest, httpclient, float(i)))
            served_by.add(_infer(grpc, grpcclient, float(i)))
    assert {node.decode() for node in served_by} == nodes, "requests were not served from both nodes"
    # Errors keep their meaning through Ray's proxies.
    with pytest.raises(Exception, match="not found|unknown model"):
        grpc.get_model_metadata("nope")

    # Kill the replica process on the second node while requests run through that node's proxy.
    second = httpclient.InferenceServerClient(f"{raycluster.NODE_IP}:{http_port}")
    node, pid = _where(second, httpclient, 0.0)
    load = _Load(f"{raycluster.NODE_IP}:{http_port}", threads=4)
    try:
        _wait_for(lambda: load.counts()[0] > 20, 60, "requests under load")
        os.kill(pid, signal.SIGKILL)

        def replaced() -> bool:  # a new replica process on the second node (the head's CPU is taken)
            with contextlib.suppress(Exception):
                now_node, now_pid = _where(second, httpclient, 0.0)
                return now_node == node and now_pid != pid and _running() == 2
            return False

        _wait_for(replaced, 180, "Ray to replace the killed replica")
        failed_while_replacing = load.counts()[1]
        ok_before = load.counts()[0]
        _wait_for(lambda: load.counts()[0] > ok_before + 100, 120, "requests after the replacement")
    finally:
        load.stop()
    ok, failed = load.counts()
    print(f"killed replica: {failed_while_replacing} of {ok + failed} requests failed while Ray replaced it")
    assert failed == failed_while_replacing, load.failed[failed_while_replacing:]


def test_ray_autoscales_from_one_to_two_replicas_under_load(
    cluster: raycluster.RayCluster, repository: Path
) -> None:
    from ray import serve
    from ray.serve.exceptions import RayServeException

    # Start from one replica, not from the two of the previous test's deployment (if it ran).
    with contextlib.suppress(RayServeException, ValueError):
        serve.delete("inferd")
    http_port, _ = _deploy(
        cluster, repository, "--min-replicas", "1", "--max-replicas", "2",
        "--target-ongoing-requests", "2", "--upscale-delay", "1",
    )  # fmt: skip
    _wait_for(lambda: _running() >= 1, 120, "the first replica")
    assert _running() == 1
    load = _Load(f"{raycluster.HEAD_IP}:{http_port}", threads=12)
    try:
        _wait_for(lambda: load.counts()[0] > 0 or load.counts()[1] > 0, 60, "the first answers")
        assert load.counts()[1] == 0, load.failed[:3]
        _wait_for(lambda: _running() == 2, 180, "Ray to add a second replica under load", load)
    finally:
        load.stop()
    ok, failed = load.counts()
    assert ok > 0 and failed == 0, load.failed[:3]
