"""Random request-shaped bodies against a real server: every answer is a 200 or a clean 4xx V2 error."""

from __future__ import annotations

import http.client
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serverctl import RunningServer

MODELS = ["identity_fp32", "identity_bytes", "identity_uint8", "simple", "fixed", "dynamic", "gather"]
NAMES = ["INPUT0", "INPUT1", "INDEX", "x", ""]
DATATYPES = ["FP32", "FP16", "INT32", "INT64", "UINT8", "BOOL", "BYTES", "BF16", "fp32"]
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
)
values = st.recursive(
    leaves,
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=25,
)
dims = st.integers(min_value=-2, max_value=2**63) | st.sampled_from([0, 1, 4, 16])
inputs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(NAMES) | values,
        "datatype": st.sampled_from(DATATYPES) | values,
        "shape": st.lists(dims, max_size=4) | values,
    },
    optional={
        "data": st.lists(st.integers(-300, 300) | st.floats(-1e40, 1e40) | st.text(max_size=3), max_size=40)
        | values,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-4, 80) | values}),
    },
)
documents = st.fixed_dictionaries(
    {"inputs": st.lists(inputs, max_size=3) | values},
    optional={
        "outputs": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["OUTPUT0", "OUTPUT1", "x"]) | values}), max_size=3
        )
        | values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"priority": values, "timeout": values, "binary_data_output": values}
        ),
        "id": values,
    },
)


def _post(server: RunningServer, model: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        connection.request("POST", f"/v2/models/{model}/infer", body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _check(status: int, payload: bytes) -> None:
    if status == 200:
        return
    # 500 only for a model that fails while running (gather with an index out of range).
    assert status in (400, 404, 500), (status, payload)
    error = json.loads(payload)
    assert set(error) == {"error"} and isinstance(error["error"], str)
    if status == 500:
        assert "failed to execute" in error["error"], payload


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(MODELS), documents, st.binary(max_size=64), st.none() | st.integers(-3, 400))
def test_random_requests_get_a_result_or_a_clean_error(
    server: RunningServer, model: str, document: object, binary: bytes, header_length: int | None
) -> None:
    head = json.dumps(document).encode()
    status, payload = _post(server, model, head, {})
    _check(status, payload)
    headers = {"Inference-Header-Content-Length": str(len(head) if header_length is None else header_length)}
    status, payload = _post(server, model, head + binary, headers)
    _check(status, payload)


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32 - 1), st.lists(st.binary(max_size=6), max_size=6))
def test_random_bytes_elements_in_the_binary_form(
    server: RunningServer, count: int, elements: list[bytes]
) -> None:
    raw = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "BYTES",
                    "shape": [1, count % 6],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    status, payload = _post(
        server, "identity_bytes", head + raw, {"Inference-Header-Content-Length": str(len(head))}
    )
    _check(status, payload)
    if status == 200:
        assert json.loads(payload)["outputs"][0]["shape"] == [1, len(elements)]
        assert np.array(elements).size == count % 6
