"""Token quotas (tokens per minute, prompt + generated) on every generative route of a real server, with
the official openai client, raw HTTP for the generate extension and tritonclient's gRPC stream.

Deterministic without a clock: the small budgets are overdrawn by far more than they refill while a
test runs (10 tokens per minute refill one token every 6 s; a debt of 50 tokens takes 5 minutes)."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
from httputil import request
from inprocess import serve_in_thread
from lifecycleutil import wait_until
from tritonclient.utils import InferenceServerException

from inferd.app import Server
from inferd.security.keys import hash_key
from inferd.settings import GrpcSettings, HttpSettings, SecuritySettings, Settings

TIMEOUT_S = 60
SMALL = "small-budget-key-0123456789"  # 10 tokens per minute
OTHER = "other-small-key-0123456789"  # 10 tokens per minute, its own bucket
STREAMS = "streams-key-0123456789"  # 40 tokens per minute
GRPC = "grpc-key-0123456789"  # 10 tokens per minute
RICH = "rich-key-0123456789"  # the server-wide default: 100000 tokens per minute
LONG_PROMPT = "The quick brown fox jumps over the lazy dog. " * 6  # far over 10 tokens


@dataclass
class Served:
    http: str
    grpc: str
    audit: Path

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://{self.http}/v1", api_key=key, max_retries=0, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_version: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("token-quotas")
    repository = root / "models"
    shutil.copytree(tiny_version, repository / "tiny" / "1")
    (repository / "tiny" / "config.yaml").write_text("platform: generative\n")
    keys = [
        {"id": "small", "hash": hash_key(SMALL), "tokens_per_minute": 10},
        {"id": "other", "hash": hash_key(OTHER), "tokens_per_minute": 10},
        {"id": "streams", "hash": hash_key(STREAMS), "tokens_per_minute": 40},
        {"id": "grpc", "hash": hash_key(GRPC), "tokens_per_minute": 10},
        {"id": "rich", "hash": hash_key(RICH), "apis": ["*"]},  # may read /metrics
    ]
    port_file = root / "ports.json"
    audit = root / "audit.jsonl"
    settings = Settings(
        model_repository=repository,
        http=HttpSettings(port=0),
        grpc=GrpcSettings(port=0),
        port_file=port_file,
        security=SecuritySettings(
            api_keys=json.dumps({"keys": keys}),
            tokens_per_minute=100_000,
            audit_log=audit,
        ),
    )
    server = Server(settings)
    server.load_models()
    with serve_in_thread(server, port_file) as serving:
        yield Served(serving.http, serving.grpc, audit)


def _post(served: Served, path: str, document: Any, key: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    return request(served.http, "POST", path, json.dumps(document).encode(), headers)


def test_openai_routes_refuse_a_spent_budget_and_send_openai_headers(served: Served) -> None:
    client = served.client(SMALL)
    raw = client.completions.with_raw_response.create(
        model="tiny", prompt=LONG_PROMPT, max_tokens=4, temperature=0
    )
    completion = raw.parse()
    assert completion.usage is not None and completion.usage.total_tokens > 50
    assert raw.headers["x-ratelimit-limit-tokens"] == "10"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "0"  # in debt: prompt + tokens > 10
    assert raw.headers["x-ratelimit-reset-tokens"].endswith("s")
    with pytest.raises(openai.RateLimitError) as refused:
        client.completions.create(model="tiny", prompt="x", max_tokens=1)
    error = refused.value.body
    assert isinstance(error, dict) and error["type"] == "rate_limit_error"
    assert "token quota exceeded: 10 tokens per minute" in error["message"]
    assert int(refused.value.response.headers["retry-after"]) > 200  # a debt of > 40 tokens
    assert refused.value.response.headers["x-ratelimit-remaining-tokens"] == "0"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError):  # refused before the stream starts: a 429, not an event
        client.completions.create(model="tiny", prompt="x", max_tokens=1, stream=True)
    # Embeddings and metadata are not generative: the spent token budget does not touch them.
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_budgets_are_per_key(served: Served) -> None:
    other = served.client(OTHER)
    other.completions.create(model="tiny", prompt=LONG_PROMPT, max_tokens=1)
    with pytest.raises(openai.RateLimitError):
        other.completions.create(model="tiny", prompt="x", max_tokens=1)
    rich = served.client(RICH).completions.with_raw_response.create(
        model="tiny", prompt=LONG_PROMPT, max_tokens=4
    )
    usage = rich.parse().usage
    assert usage is not None
    remaining = int(rich.headers["x-ratelimit-remaining-tokens"])
    assert rich.headers["x-ratelimit-limit-tokens"] == "100000"  # the server-wide default
    assert 100_000 - usage.total_tokens <= remaining < 100_000


def test_a_stream_that_spends_the_budget_finishes_then_the_next_is_refused(served: Served) -> None:
    client = served.client(STREAMS)
    raw = client.completions.with_raw_response.create(
        model="tiny",
        prompt="Paris is",
        max_tokens=60,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-ratelimit-limit-tokens"] == "40"  # sent with the stream's first token
    assert 0 <= int(raw.headers["x-ratelimit-remaining-tokens"]) < 40
    chunks = list(raw.parse())
    usage = chunks[-1].usage
    assert usage is not None and usage.total_tokens > 40, "the stream must overdraw its 40 tokens"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["length"], ["stop"])  # finished as asked, not cut
    status, headers, body = _post(
        served, "/v2/models/tiny/generate", {"text_input": "x", "parameters": {"max_tokens": 1}}, STREAMS
    )
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert "token quota exceeded" in json.loads(body)["error"]  # the extension's error shape
    status, _, body = _post(served, "/v2/models/tiny/generate_stream", {"text_input": "x"}, STREAMS)
    assert status == 429 and "token quota exceeded" in json.loads(body)["error"]


def _text_input(text: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("text_input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([text.encode()], dtype=object))
    return tensor


def test_grpc_stream_is_ended_with_resource_exhausted(served: Served) -> None:
    results: list[Any] = []
    client = grpcclient.InferenceServerClient(served.grpc)
    client.start_stream(
        callback=lambda result, error: results.append(error or result), headers={"x-api-key": GRPC}
    )
    try:
        client.async_stream_infer(
            "tiny", [_text_input(LONG_PROMPT)], request_id="first", parameters={"max_tokens": 2}
        )
        # The second message is read once the first is answered: its prompt alone spent the budget.
        wait_until(
            lambda: any(
                not isinstance(r, InferenceServerException)
                and r.get_response().parameters["triton_final_response"].bool_param
                for r in results
            ),
            TIMEOUT_S,
            "the first request's last response",
        )
        client.async_stream_infer(
            "tiny", [_text_input("x")], request_id="second", parameters={"max_tokens": 1}
        )
    except InferenceServerException:
        pass  # the server already ended the stream; its status is among the results
    finally:
        client.stop_stream()
    errors = [r for r in results if isinstance(r, InferenceServerException)]
    answers = [r.get_response().id for r in results if not isinstance(r, InferenceServerException)]
    assert set(answers) == {"first"}
    assert len(errors) == 1 and "RESOURCE_EXHAUSTED" in str(errors[0].status())
    assert "token quota exceeded" in str(errors[0].message())


def test_tokens_are_counted_per_key_in_metrics_and_the_audit_log(served: Served) -> None:
    def records() -> list[dict[str, Any]]:
        lines = served.audit.read_text().splitlines() if served.audit.exists() else []
        return [r for r in map(json.loads, lines) if r["key_id"] == "rich" and "tokens" in r]

    client = served.client(RICH)
    before = _charged(served, "rich")
    records_before = len(records())
    usage = client.completions.create(model="tiny", prompt="Paris is", max_tokens=5).usage
    status, _, body = _post(
        served, "/v2/models/tiny/generate", {"text_input": "Paris", "parameters": {"max_tokens": 3}}, RICH
    )
    assert usage is not None and status == 200
    generated = json.loads(body)["usage"]
    expected = usage.total_tokens + generated["prompt_tokens"] + generated["completion_tokens"]
    assert _charged(served, "rich") - before == expected
    wait_until(lambda: len(records()) >= records_before + 2, TIMEOUT_S, "the audit records")
    last = records()[-2:]
    assert [r["tokens"] for r in last] == [usage.total_tokens, expected - usage.total_tokens]
    assert [r["call"] for r in last] == ["POST /v1/completions", "POST /v2/models/tiny/generate"]
    assert last[0]["model"] == "tiny" and last[0]["status"] in ("stop", "length")
    metrics = _metrics(served)
    assert 'inferd_security_refusals_total{reason="tokens"}' in metrics


def _metrics(served: Served) -> str:
    status, _, body = request(served.http, "GET", "/metrics", headers={"authorization": f"Bearer {RICH}"})
    assert status == 200, body
    return body.decode()


def _charged(served: Served, key_id: str) -> int:
    for line in _metrics(served).splitlines():
        if line.startswith(f'inferd_tokens_charged_total{{key_id="{key_id}"}}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def test_a_client_gone_mid_stream_is_charged_what_it_was_sent(served: Served) -> None:
    def cancelled() -> list[dict[str, Any]]:
        lines = served.audit.read_text().splitlines() if served.audit.exists() else []
        return [r for r in map(json.loads, lines) if r["key_id"] == "rich" and r["status"] == "cancelled"]

    before = len(cancelled())
    host, port = served.http.rsplit(":", 1)
    body = json.dumps({"model": "tiny", "prompt": "Paris is", "max_tokens": 400, "stream": True})
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    connection.request("POST", "/v1/completions", body=body, headers={"authorization": f"Bearer {RICH}"})
    response = connection.getresponse()
    assert response.status == 200 and response.read(6) == b"data: "
    response.fp.raw._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
    connection.close()
    wait_until(lambda: len(cancelled()) > before, TIMEOUT_S, "the cancelled generation's record")
    record = cancelled()[-1]
    assert record["call"] == "POST /v1/completions" and 2 < record["tokens"] < 2 + 400
