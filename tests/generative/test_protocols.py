"""A generative model (the tiny decoder) served for real through every protocol: the official openai
client (completions, chat, streaming, embeddings), the generate extension, tritonclient's gRPC decoupled
stream; bad input as each protocol's own 400/413; API keys and rate limits on /v1; and a thousand
abandoned streams leaving no sequence in the engine."""

from __future__ import annotations

import base64
import http.client
import json
import queue
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pymodels
import pytest
import tritonclient.grpc as grpcclient
from httputil import request
from inprocess import serve_in_thread
from lifecycleutil import wait_until

from inferd.app import Server
from inferd.security.keys import hash_key
from inferd.settings import GrpcSettings, HttpSettings, SecuritySettings, Settings

TIMEOUT_S = 60
KEY = "main-key-0123456789"
EMBED_ONLY = "embed-only-key-0123456789"
LIMITED = "limited-key-0123456789"  # one request, then 429 for an hour

# A deterministic stand-in for an embedding model: one BYTES input, one FP32 output.
EMBED = """
import numpy as np
from inferd import Model, Tensor

class Embed(Model):
    inputs = [Tensor("text", "BYTES", [-1])]
    outputs = [Tensor("embedding", "FP32", [-1, 4])]
    max_batch_size = 16

    def predict(self, inputs):
        rows = [[len(t), sum(t) % 7, t.count(b" "), 1.0] for t in inputs["text"]]
        return {"embedding": np.array(rows, dtype=np.float32)}
"""


@dataclass
class Served:
    http: str
    grpc: str
    server: Server

    def engine(self) -> Any:
        return self.server.repository.registry.get("tiny", None).runtime.engine  # type: ignore[attr-defined]

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://{self.http}/v1", api_key=key, max_retries=0, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_version: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("generative-protocols")
    repository = root / "models"
    shutil.copytree(tiny_version, repository / "tiny" / "1")
    (repository / "tiny" / "config.yaml").write_text("platform: generative\ngenerative:\n  max_tokens: 480\n")
    pymodels.write(repository, "embed", EMBED)
    keys = [
        {"id": "main", "hash": hash_key(KEY)},
        {"id": "embed-only", "hash": hash_key(EMBED_ONLY), "models": ["embed"]},
        {"id": "limited", "hash": hash_key(LIMITED), "rate": 0.0003, "burst": 1},
    ]
    port_file = root / "ports.json"
    settings = Settings(
        model_repository=repository,
        http=HttpSettings(port=0, max_body_bytes=16384),
        grpc=GrpcSettings(port=0),
        port_file=port_file,
        security=SecuritySettings(api_keys=json.dumps({"keys": keys})),
    )
    server = Server(settings)
    server.load_models()
    with serve_in_thread(server, port_file) as serving:
        yield Served(serving.http, serving.grpc, server)


def post(served: Served, path: str, document: Any, key: str = KEY) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    status, response_headers, payload = request(served.http, "POST", path, body, headers)
    if response_headers.get("content-type", "").startswith("text/event-stream"):
        return status, [chunk[len(b"data: ") :] for chunk in payload.split(b"\n\n") if chunk]
    return status, json.loads(payload)


# OpenAI ------------------------------------------------------------------------------------------
def test_models_lists_the_repository(served: Served) -> None:
    ids = [model.id for model in served.client().models.list()]
    assert ids == ["embed", "tiny"]


def test_completion_counts_usage_in_tokens(served: Served) -> None:
    completion = served.client().completions.create(
        model="tiny", prompt="The quick brown fox", max_tokens=8, temperature=0
    )
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length") and completion.model == "tiny"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streamed_completion_equals_the_whole_one_and_ends_with_done(served: Served) -> None:
    client = served.client()
    arguments: dict[str, Any] = {"model": "tiny", "prompt": "Paris is", "max_tokens": 12, "seed": 7}
    whole = client.completions.create(**arguments).choices[0].text
    chunks = list(client.completions.create(**arguments, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    status, events = post(served, "/v1/completions", {**arguments, "stream": True})
    assert status == 200 and events[-1] == b"[DONE]"


def test_seed_makes_sampling_repeatable(served: Served) -> None:
    client = served.client()

    def sample(seed: int) -> str:
        return (
            client.completions.create(
                model="tiny",
                prompt="Caf",
                max_tokens=16,
                temperature=1.0,
                seed=seed,
                extra_body={"top_k": 50},
            )
            .choices[0]
            .text
        )

    assert sample(3) == sample(3)


def test_chat_completion_applies_the_template_and_streams(served: Served) -> None:
    client = served.client()
    messages: list[Any] = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
    ]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0)
    message = whole.choices[0].message
    assert message.role == "assistant" and whole.object == "chat.completion"
    assert whole.usage is not None and whole.usage.prompt_tokens > 10  # the template's tokens counted
    stream = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=10, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_embeddings_come_from_the_embedding_model(served: Served) -> None:
    client = served.client()
    result = client.embeddings.create(model="embed", input=["a b", "hello"])
    assert [d.embedding for d in result.data] == [[3.0, 3.0, 1.0, 1.0], [5.0, 532 % 7, 0.0, 1.0]]
    encoded = client.embeddings.create(model="embed", input="a b", encoding_format="base64")
    vector = np.frombuffer(base64.b64decode(str(encoded.data[0].embedding)), dtype="<f4")
    assert vector.tolist() == [3.0, 3.0, 1.0, 1.0]
    with pytest.raises(openai.BadRequestError, match="not an embedding model"):
        client.embeddings.create(model="tiny", input="x")


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"bogus": 1}, "bogus", "unknown or unsupported"),
        ({"n": 2}, "n", "'n' = 2 is not supported"),
        ({"stream": "yes"}, "stream", "'stream' must be a boolean"),
        ({"max_tokens": 481}, None, "'max_tokens' must be between"),
        ({"temperature": "hot"}, None, "'temperature' must be a number"),
        ({"prompt": "fox " * 2000}, None, "context"),
        ({"model": "nothere"}, None, "nothere"),
        ({"model": "embed"}, None, "not a generative model"),
    ],
)
def test_bad_completion_requests_get_openai_errors(
    served: Served, body: dict[str, Any], param: str | None, says: str
) -> None:
    status, document = post(served, "/v1/completions", {"model": "tiny", "prompt": "x", **body})
    assert status == (404 if body.get("model") == "nothere" else 400)
    error = document["error"]
    assert (
        says in error["message"]
        and error["param"] == param
        and set(error) == {"message", "type", "param", "code"}
    )
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([], "non-empty list"),
        ([{"role": "wizard", "content": "x"}], "role must be one of"),
        ([{"role": "user"}], "content must be"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "only text parts"),
        (["hello"], "must be an object"),
    ],
)
def test_malformed_chat_messages_are_400(served: Served, messages: Any, says: str) -> None:
    with pytest.raises(openai.BadRequestError, match=says):
        served.client().chat.completions.create(model="tiny", messages=messages)


def test_oversized_and_malformed_bodies(served: Served) -> None:
    status, document = post(served, "/v1/completions", {"model": "tiny", "prompt": "x" * 20000})
    assert status == 413 and "exceeds" in document["error"]["message"]
    status, document = post(served, "/v1/chat/completions", b"{not json")
    assert status == 400 and "not valid JSON" in document["error"]["message"]


def test_keys_and_rate_limits_apply(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError):
        served.client("wrong-key-0123456789").completions.create(model="tiny", prompt="x", max_tokens=1)
    with pytest.raises(openai.PermissionDeniedError):
        served.client(EMBED_ONLY).completions.create(model="tiny", prompt="x", max_tokens=1)
    served.client(EMBED_ONLY).embeddings.create(model="embed", input="x")
    limited = served.client(LIMITED)
    limited.completions.create(model="tiny", prompt="x", max_tokens=1)
    with pytest.raises(openai.RateLimitError):
        limited.completions.create(model="tiny", prompt="x", max_tokens=1)


# Generate extension and gRPC ---------------------------------------------------------------------
def test_generate_extension_on_a_generative_model(served: Served) -> None:
    parameters = {"max_tokens": 6, "temperature": 0}
    status, whole = post(
        served, "/v2/models/tiny/generate", {"text_input": "Paris", "parameters": parameters}
    )
    assert status == 200 and whole["model_name"] == "tiny" and whole["finish_reason"] in ("stop", "length")
    status, events = post(
        served, "/v2/models/tiny/generate_stream", {"text_input": "Paris", "parameters": parameters}
    )
    documents = [json.loads(e) for e in events]
    assert status == 200 and "".join(d["text_output"] for d in documents) == whole["text_output"]
    assert [d["done"] for d in documents] == [False] * (len(documents) - 1) + [True]
    status, error = post(
        served, "/v2/models/tiny/generate_stream", {"text_input": "x", "parameters": {"temprature": 0}}
    )
    assert status == 400 and "unknown sampling parameter(s): temprature" in error["error"]


def test_grpc_decoupled_stream_of_tokens(served: Served) -> None:
    results: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
    client = grpcclient.InferenceServerClient(served.grpc)
    headers = {"authorization": f"Bearer {KEY}"}
    client.start_stream(callback=lambda result, error: results.put((result, error)), headers=headers)
    try:
        for request_id in ("a", "b"):
            tensor = grpcclient.InferInput("text_input", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([b"The quick"], dtype=object))
            client.async_stream_infer(
                "tiny",
                [tensor],
                request_id=request_id,
                parameters={"max_tokens": 5, "temperature": 0},
                enable_empty_final_response=True,
            )
        texts: dict[str, list[bytes]] = {"a": [], "b": []}
        finals = 0
        while finals < 2:
            result, error = results.get(timeout=TIMEOUT_S)
            assert error is None, error
            response = result.get_response()
            texts[response.id].append(result.as_numpy("text_output")[0])
            finals += response.parameters["triton_final_response"].bool_param
    finally:
        client.stop_stream()
    assert texts["a"] == texts["b"] and 1 <= len(texts["a"]) <= 5  # greedy: the same tokens


def test_abandoned_streams_free_their_sequences(served: Served) -> None:
    engine = served.engine()
    host, port = served.http.rsplit(":", 1)
    # Long greedy generations: this prompt's 480 greedy tokens hold no end-of-sequence token (checked
    # first), so each stream is still running when its client goes. Sampled, one might end early.
    whole = {"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 480, "temperature": 0}
    status, document = post(served, "/v1/completions", whole)
    assert status == 200 and document["choices"][0]["finish_reason"] == "length", document
    cancelled = engine.stats.finished.get("cancelled", 0)
    body = json.dumps({**whole, "stream": True})
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    for _ in range(50):
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
        connection.request("POST", "/v1/completions", body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 200 and response.read(6) == b"data: "
        response.fp.raw._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        connection.close()
    for _ in range(5):
        seen: queue.SimpleQueue[Any] = queue.SimpleQueue()
        client = grpcclient.InferenceServerClient(served.grpc)
        client.start_stream(
            callback=lambda result, error, q=seen: q.put(result), headers={"authorization": f"Bearer {KEY}"}
        )
        tensor = grpcclient.InferInput("text_input", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([b"The quick brown fox"], dtype=object))
        client.async_stream_infer("tiny", [tensor], parameters={"max_tokens": 480, "temperature": 0})
        seen.get(timeout=TIMEOUT_S)
        client.stop_stream(cancel_requests=True)
    wait_until(lambda: engine.active == 0 and engine.waiting == 0, TIMEOUT_S, "no sequence left")
    assert served.server.dataplane.streams.active == 0
    # Freed by the disconnects, not by running to their end.
    assert engine.stats.finished.get("cancelled", 0) - cancelled == 55
