"""Hot swaps under load on a model answered through a Redis response cache: a request that resolved the
old version and then awaited the cache is still served by that version, never refused (issue 9, item 7)."""

from __future__ import annotations

from pathlib import Path

import modelfactory as mf
import tritonclient.http as httpclient
from lifecycleutil import write_version
from loadgen import LoadGenerator, add_constant_sender
from redisctl import RunningRedis
from serverctl import start_server

CONFIG = "max_batch_size: 8\nresponse_cache: true\ndynamic_batching:\n  max_queue_delay_ms: 1\n"
SWAPS = 8
TIMEOUT_S = 60


def test_swaps_under_load_with_a_redis_cache_fail_no_request(
    tmp_path: Path, redis_server: RunningRedis
) -> None:
    root = tmp_path / "models"
    model_dir = mf.write_model(root, "m", lambda p: mf.add_constant(p, 1.0), config=CONFIG)
    server = start_server(
        root,
        tmp_path,
        "--model-control",
        "explicit",
        "--load-model",
        "m",
        "--cache",
        redis_server.url,
        "--cache-key-prefix",
        f"swap-{tmp_path.name}:",
    )
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        # Fresh random inputs: every request misses, so each one awaits Redis before it is queued.
        with LoadGenerator(
            lambda i: add_constant_sender(server.http_url, server.grpc_url, "m", i), threads=4
        ) as load:
            load.wait_for(lambda lg: len(lg.answers()) >= 40, TIMEOUT_S, "answers from version 1")
            for version in range(2, 2 + SWAPS):
                write_version(model_dir, version, lambda p, c=float(version): mf.add_constant(p, c))
                client.load_model("m")  # returns after the switch to the new version
                mark = load.marks()
                load.wait_for(lambda lg, m=mark: lg.count_after(m) >= 40, TIMEOUT_S, "answers after a swap")
        assert load.errors() == []
        answers = load.answers()
        assert all(meaning == float(version) for version, meaning in answers), "a wrong answer"
        assert {version for version, _ in answers} == {str(v) for v in range(1, 2 + SWAPS)}
        stats = client.get_inference_statistics("m")["model_stats"]
        assert sum(s["inference_stats"]["cache_miss"]["count"] for s in stats) > 0
    finally:
        assert server.stop() == 0, server.log()
