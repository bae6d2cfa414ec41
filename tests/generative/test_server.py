"""A server with a generative model in its repository: it loads and shows READY, its metadata and
config are sane, a V2 infer points at the generate routes, and /metrics carries the engine's figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from httputil import request
from lifecycleutil import index
from metricsutil import scrape, value
from serverctl import start_server
from tritonclient.utils import InferenceServerException


def test_a_generative_model_is_served_next_to_the_v2_api(tiny_repository: Path, tmp_path: Path) -> None:
    server = start_server(tiny_repository, tmp_path)
    try:
        rows = index(server.http_url)
        assert [(r["name"], r["version"], r["state"]) for r in rows] == [("tiny", "1", "READY")]
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_model_ready("tiny")
        metadata = client.get_model_metadata("tiny")
        assert metadata["platform"] == "generative"
        assert [i["name"] for i in metadata["inputs"]] == ["text_input"]
        config = client.get_model_config("tiny")
        assert config["platform"] == "generative"
        assert config["model_transaction_policy"] == {"decoupled": True}
        text = httpclient.InferInput("text_input", [1], "BYTES")
        text.set_data_from_numpy(np.array([b"hello"], dtype=object))
        with pytest.raises(InferenceServerException) as refused:
            client.infer("tiny", [text])
        assert refused.value.status() == "400"
        assert "/v2/models/tiny/generate" in refused.value.message()
        status, _, _ = request(server.http_url, "GET", "/v2/models/tiny/stats")
        assert status == 200
        samples = scrape(server.http_url)
        labels = {"model": "tiny", "version": "1"}
        assert value(samples, "inferd_generation_sequences_active", **labels) == 0
        assert ("inferd_generation_kv_cache_bytes", frozenset(labels.items())) in samples
        assert value(samples, "inferd_generation_time_to_first_token_seconds_count", **labels) == 0
    finally:
        assert server.stop() == 0
