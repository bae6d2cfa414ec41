"""schemathesis against a real server with docs/openapi.yaml: no 5xx, and every response matches the
description (status codes, content types, bodies). Bounded so the suite stays fast."""

from __future__ import annotations

from pathlib import Path

import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from serverctl import RunningServer

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
# Names the shared test server serves, so generated requests reach real models, plus ones it does not.
MODELS = [
    "identity_fp32",
    "identity_bytes",
    "identity_bool",
    "simple",
    "fixed",
    "dynamic",
    "versioned",
    "nope",
]


def _schema() -> schemathesis.BaseSchema:
    document = yaml.safe_load(SPEC.read_text())
    parameters = document["components"]["parameters"]
    parameters["Model"]["schema"] = {"type": "string", "enum": MODELS}
    parameters["Version"]["schema"] = {"type": "string", "enum": ["1", "3", "9", ""]}
    return schemathesis.openapi.from_dict(document)


# Starting, promoting or rolling back a rollout changes which version answers the shared server's
# other tests; tests/e2e/test_lifecycle_canary.py covers them on servers of their own.
schema = _schema().exclude(method="POST", path_regex=r"/(rollout|promote|rollback)$")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_rest_api_matches_its_openapi_description(case: schemathesis.Case, server: RunningServer) -> None:
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    case.call_and_validate(base_url=f"http://{server.http_url}", checks=checks)
