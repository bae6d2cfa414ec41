"""System shared memory with API keys on: only the admin (repository) scope registers, and a region
serves only the key that registered it, over REST and gRPC; an output region unlinked while its
request runs fails that request cleanly."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import modelfactory as mf
import numpy as np
import pymodels
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException
from tritonshm import shared_memory

from inferd.security.keys import hash_key, new_key

shm = shared_memory()
ADMIN, ALICE = new_key(), new_key()
# Returns its input once the file GATE exists: the test decides when the model finishes.
GATED = """
import os, time
from inferd import Model, Tensor

class Gated(Model):
    inputs = [Tensor("INPUT0", "FP32", [-1, 4])]
    outputs = [Tensor("OUTPUT0", "FP32", [-1, 4])]
    max_batch_size = 8

    def predict(self, inputs):
        deadline = time.monotonic() + 60
        while not os.path.exists(GATE) and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"OUTPUT0": inputs["INPUT0"]}
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("models")
    mf.write_model(root, "simple", mf.add_sub, config="max_batch_size: 8\n")
    workdir = tmp_path_factory.mktemp("secured")
    pymodels.write(root, "gated", GATED.replace("GATE", repr(str(workdir / "gate"))))
    keys = workdir / "keys.yaml"
    keys.write_text(
        "keys:\n"
        f"  - id: admin\n    hash: {hash_key(ADMIN)}\n    apis: ['*']\n"
        f"  - id: alice\n    hash: {hash_key(ALICE)}\n    apis: [inference, metadata]\n"
    )
    running = start_server(Path(root), workdir, "--api-keys", str(keys))
    yield running
    # A region still registered at shutdown: released with the server, which exits cleanly.
    key = f"/inferd_left_{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region("left", key, 64)
    try:
        client = httpclient.InferenceServerClient(running.http_url)
        client.register_system_shared_memory("left", key, 64, headers=_bearer(ADMIN))
        assert running.stop() == 0, running.log()
    finally:
        shm.destroy_shared_memory_region(handle)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_only_the_admin_scope_registers_and_only_its_key_uses_the_region(
    secured: RunningServer, protocol: str
) -> None:
    if protocol == "http":
        client, module = (
            httpclient.InferenceServerClient(secured.http_url.removeprefix("http://")),
            httpclient,
        )
        admin, alice = _bearer(ADMIN), _bearer(ALICE)
    else:
        client, module = grpcclient.InferenceServerClient(secured.grpc_url), grpcclient
        admin, alice = {"authorization": f"Bearer {ADMIN}"}, {"authorization": f"Bearer {ALICE}"}
    key = f"/inferd_sec_{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region("in", key, 128)
    try:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        shm.set_shared_memory_region(handle, [a, a])
        with pytest.raises(InferenceServerException, match="403|PERMISSION_DENIED|not allowed"):
            client.register_system_shared_memory("in", key, 128, headers=alice)
        with pytest.raises(InferenceServerException, match="403|PERMISSION_DENIED|not allowed"):
            client.get_system_shared_memory_status(headers=alice)
        with pytest.raises(InferenceServerException, match="401|UNAUTHENTICATED|key"):
            client.register_system_shared_memory("in", key, 128)
        with pytest.raises(InferenceServerException, match="403|PERMISSION_DENIED|not allowed"):
            client.update_log_settings({"log_info": False}, headers=alice)
        client.register_system_shared_memory("in", key, 128, headers=admin)
        inputs = []
        for index, name in enumerate(("INPUT0", "INPUT1")):
            tensor = module.InferInput(name, [1, 16], "INT32")
            tensor.set_shared_memory("in", 64, 64 * index)
            inputs.append(tensor)
        result = client.infer("simple", inputs, headers=admin)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)
        with pytest.raises(InferenceServerException, match="registered by another API key"):
            client.infer("simple", inputs, headers=alice)
        client.unregister_system_shared_memory(headers=admin)
    finally:
        shm.destroy_shared_memory_region(handle)


def test_an_output_region_unlinked_while_the_model_runs_fails_the_request(secured: RunningServer) -> None:
    client = httpclient.InferenceServerClient(secured.http_url.removeprefix("http://"), concurrency=2)
    key = f"/inferd_mid_{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region("out", key, 16)
    gate = secured.log_path.parent / "gate"  # the server's workdir, where GATED looks
    try:
        client.register_system_shared_memory("out", key, 16, headers=_bearer(ADMIN))
        tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
        output = httpclient.InferRequestedOutput("OUTPUT0")
        output.set_shared_memory("out", 16)
        pending = client.async_infer("gated", [tensor], outputs=[output], headers=_bearer(ADMIN))
        Path(f"/dev/shm{key}").unlink()  # the model cannot return before the gate opens below
        gate.touch()
        with pytest.raises(InferenceServerException, match="was unlinked by its owner"):
            pending.get_result()
        assert client.is_server_live(headers=_bearer(ADMIN))
        client.unregister_system_shared_memory(headers=_bearer(ADMIN))
    finally:
        with contextlib.suppress(shm.SharedMemoryException):
            shm.destroy_shared_memory_region(handle)
