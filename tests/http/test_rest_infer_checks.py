"""A REST inference request is checked servable once: before its body is read, and the data plane
decodes with that outcome instead of checking again (inferd/http/app.py, DataPlane.serve)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import modelfactory as mf

from inferd.dataplane.dataplane import DataPlane
from inferd.http.app import RestApp
from inferd.repository.manager import ModelRepository
from inferd.types import Admission

CONFIG = "max_batch_size: 4\ndynamic_batching: {}\n"


class _CountingDataPlane(DataPlane):
    checks = 0

    def check_servable(self, name: str, version: str | None) -> Admission | None:
        self.checks += 1
        return super().check_servable(name, version)


async def _post(app: RestApp, path: str, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = json.dumps(document).encode()
    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_a_rest_request_is_checked_servable_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        mf.write_model(tmp_path, "m", lambda p: mf.add_constant(p, 1.0), config=CONFIG)
        repository = ModelRepository(tmp_path)
        await repository.load_initial(None, exit_on_error=True)
        dataplane = _CountingDataPlane(repository)
        app = RestApp(dataplane, 1 << 20)
        tensor = {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [0, 1, 2, 3]}
        status, answer = await _post(app, "/v2/models/m/infer", {"inputs": [tensor]})
        assert status == 200 and answer["outputs"][0]["data"] == [1, 2, 3, 4]
        assert dataplane.checks == 1
        # Refused by the admission that one check returned, before the data is decoded.
        wrong = {**tensor, "shape": [1, 5], "data": [0, 1, 2, 3, 4]}
        status, answer = await _post(app, "/v2/models/m/infer", {"inputs": [wrong]})
        assert status == 400 and "INPUT0" in answer["error"]
        assert dataplane.checks == 2
        status, _ = await _post(app, "/v2/models/nothere/infer", {"inputs": [tensor]})
        assert status == 404 and dataplane.checks == 3
        await repository.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
