"""``inferd bench --scenario generative`` against a server with the tiny decoder: both APIs, both loads,
tokens counted as the server's usage counts them, refusals before measuring; and the window rules of
the summary on hand-made records. Nothing here asserts on speed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from serverctl import RunningServer, start_server

from inferd.bench.command import bench
from inferd.bench.endpoint import BenchError, Endpoint
from inferd.bench.generative import (
    GenerativeResult,
    GenerativeSpec,
    StreamRecord,
    _EventReader,
    run_generative,
)
from inferd.bench.generative_report import summarize
from inferd.bench.prompts import BUILTIN_PROMPTS, load_prompts

SHORT = ["--duration", "1", "--warmup", "0.2", "--no-progress", "--max-tokens", "6"]
PROMPTS = ["The quick brown fox", "Hello there", "What is the capital of France?"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_version: Path) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("generative-bench")
    shutil.copytree(tiny_version, root / "models" / "tiny" / "1")
    (root / "models" / "tiny" / "config.yaml").write_text("platform: generative\n")
    running = start_server(root / "models", root)
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": p}) for p in PROMPTS) + "\n")
    return path


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(bench, list(args))
    return result.exit_code, result.output


def check_run(run: dict[str, Any]) -> None:
    assert run["errors"] == {}
    assert run["requests_ok"] == run["requests"] > 0
    assert run["output_tokens_per_s"] > 0 and run["requests_per_s"] > 0
    assert 1 <= run["tokens_per_request"] <= 6
    for key in ("ttft_ms", "inter_token_ms", "latency_ms"):
        figures = run[key]
        assert 0 <= figures["p50"] <= figures["p90"] <= figures["p99"]
    assert run["ttft_ms"]["p99"] <= run["latency_ms"]["p99"]


def test_generate_stream_closed_loop(server: RunningServer, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    url = f"http://{server.http_url}"
    code, output = run_cli(
        url, "-m", "tiny", "--prompts", str(prompts), "--concurrency", "1,3", *SHORT, "--json", str(out)
    )
    assert code == 0, output
    assert "TTFT p99 ms" in output
    document = json.loads(out.read_text())
    assert (document["scenario"], document["api"], document["prompts"]) == ("generative", "generate", 3)
    assert [run["concurrency"] for run in document["runs"]] == [1, 3]
    for run in document["runs"]:
        check_run(run)


def test_openai_poisson_arrivals(server: RunningServer, prompts: Path) -> None:
    url = f"http://{server.http_url}"
    code, output = run_cli(
        url, "-m", "tiny", "--api", "openai", "--prompts", str(prompts), "--rate", "8", *SHORT, "--json", "-"
    )
    assert code == 0, output
    document = json.loads(output)
    (run,) = document["runs"]
    assert run["offered_rate"] == 8 and run["concurrency"] is None
    check_run(run)


@pytest.mark.parametrize("api", ["generate", "openai"])
def test_every_token_event_is_counted(server: RunningServer, api: Any) -> None:
    """The events timed are the tokens the server says it generated (its usage)."""
    host, port = server.http_url.split(":")
    spec = GenerativeSpec(
        Endpoint("http", host, int(port)),
        "tiny",
        "",
        api,
        tuple(PROMPTS),
        6,
        concurrency=2,
        warmup_s=0,
        duration_s=0.5,
    )
    result = run_generative(spec)
    assert result.records and all(r.ok for r in result.records)
    for record in result.records:
        assert record.completion_tokens == len(record.token_times) > 0
        assert record.prompt_tokens > 0
        assert record.token_times == sorted(record.token_times) and record.token_times[0] >= record.scheduled


def test_refusals_before_measuring(server: RunningServer, tmp_path: Path) -> None:
    url = f"http://{server.http_url}"
    too_long = tmp_path / "long.txt"
    too_long.write_text("fox " * 2000 + "\n")
    code, output = run_cli(url, "-m", "tiny", "--prompts", str(too_long), *SHORT)
    assert code == 1
    assert "nothing was measured: HTTP 400" in output and "context" in output
    code, output = run_cli(url, "-m", "nope", "--api", "openai", *SHORT)
    assert code == 1 and "HTTP 404" in output
    code, output = run_cli(f"grpc://{server.grpc_url}", "-m", "tiny", "--scenario", "generative", *SHORT)
    assert code == 1 and "use http(s)://" in output
    code, output = run_cli(url, "-m", "tiny", "--max-tokens", "4", "--batch-size", "4")
    assert code == 1 and "--batch-size do(es) not apply" in output
    code, output = run_cli(url, "-m", "tiny", "--scenario", "offline", "--max-tokens", "4")
    assert code == 1 and "belong to the generative scenario" in output


def test_window_rules() -> None:
    """Latencies come from requests scheduled in the window; throughput from tokens that arrived in it."""
    spec = GenerativeSpec(Endpoint("http", "h", 1), "m", "", "generate", ("p",), 4, duration_s=10)
    early = StreamRecord(scheduled=-1.0, token_times=[0.5, 1.0, 1.5], finished=True)  # warm-up: tokens count
    inside = StreamRecord(scheduled=2.0, token_times=[2.5, 2.75, 3.25], finished=True)
    failed = StreamRecord(scheduled=4.0, token_times=[4.5], error="connection lost")
    late = StreamRecord(scheduled=9.5, token_times=[9.9, 10.2], finished=True)  # one token after the end
    result = GenerativeResult((0.0, 10.0), [early, inside, failed, late], {}, 0.1, 10.0)
    summary = summarize(spec, result)
    assert summary.requests == 3 and summary.completed == 2
    assert summary.errors == {"connection lost": 1}
    assert summary.output_tokens_per_s == pytest.approx(8 / 10)  # 2 + 3 + 1 + 1 + 1 tokens in [0, 10)
    assert summary.requests_per_s == pytest.approx(2 / 10)  # early and inside ended in the window
    assert summary.ttft_s[50.0] == pytest.approx(0.4) and summary.ttft_s[99.0] == pytest.approx(0.5)
    # Gaps of inside and late (0.25, 0.5, 0.3): early's were scheduled in the warm-up.
    assert summary.inter_token_s == pytest.approx({50.0: 0.3, 90.0: 0.5, 99.0: 0.5})


def test_event_reader_splits_events_and_stops_at_an_error() -> None:
    record = StreamRecord(0.0)
    reader = _EventReader("openai", record)
    reader._streaming = True  # as after a 200
    reader.arrived = 1.0
    reader.on_body(b'data: {"choices": [{"text": "a"}]}\n\ndata: {"choi')
    reader.on_body(b'ces": [{"text": "b"}]}\n\n')
    reader.on_body(b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}\n\n')
    reader.on_body(b"data: [DONE]\n\n")
    assert record.token_times == [1.0, 1.0] and record.finished and record.completion_tokens == 2
    failing = StreamRecord(0.0)
    reader = _EventReader("generate", failing)
    reader._streaming = True
    reader.on_body(b'data: {"text_output": "a", "done": false}\n\ndata: {"error": "boom"}\n\n')
    assert reader.failure == ("error event", '"boom"') and len(failing.token_times) == 1


def test_prompt_files(tmp_path: Path) -> None:
    assert len(BUILTIN_PROMPTS) >= 6 and len({len(p) for p in BUILTIN_PROMPTS}) == len(BUILTIN_PROMPTS)
    text = tmp_path / "p.txt"
    text.write_text("one\n\n two \n")
    assert load_prompts(text) == ("one", " two ")
    lines = tmp_path / "p.jsonl"
    lines.write_text('"a"\n{"text_input": "b"}\n')
    assert load_prompts(lines) == ("a", "b")
    lines.write_text('{"other": 1}\n')
    with pytest.raises(BenchError, match=r"p\.jsonl:1"):
        load_prompts(lines)
