"""Spans of a real in-process server (REST and gRPC on 127.0.0.1), captured by the SDK's
in-memory exporter."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from inprocess import serve_in_thread
from metricsutil import scrape, value
from onnx import TensorProto
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tritonclient.utils import InferenceServerException

from inferd.app import Server
from inferd.settings import GrpcSettings, HttpSettings, Settings
from inferd.tracing.tracer import Tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@dataclass
class TracedServer:
    http: str
    grpc: str
    exporter: InMemorySpanExporter


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedServer]:
    root = tmp_path_factory.mktemp("traced")
    repository = root / "models"
    mf.write_model(
        repository, "ident", lambda p: mf.identity(p, TensorProto.FLOAT), config="max_batch_size: 8\n"
    )
    # Lone requests to this one run on the event-loop thread once measured (inline execution).
    mf.write_model(
        repository,
        "inline",
        lambda p: mf.identity(p, TensorProto.FLOAT),
        config="max_batch_size: 8\ninline_execution_max_us: 10000\n",
    )
    mf.write_model(
        repository,
        "slow",
        lambda p: mf.slow(p, ms=100),
        config="max_batch_size: 8\ndynamic_batching:\n  max_queue_delay_ms: 1\n",
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    port_file = root / "ports.json"
    settings = Settings(
        model_repository=repository,
        http=HttpSettings(port=0),
        grpc=GrpcSettings(port=0),
        port_file=port_file,
    )
    server = Server(settings, tracing=Tracing(provider))
    server.load_models()
    with serve_in_thread(server, port_file) as serving:
        yield TracedServer(serving.http, serving.grpc, exporter)


def _inputs(module: object, rows: int = 1) -> list[object]:
    tensor = module.InferInput("INPUT0", [rows, 4], "FP32")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(np.ones((rows, 4), dtype=np.float32))
    return [tensor]


def _children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> dict[str, ReadableSpan]:
    assert parent.context is not None
    return {s.name: s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id}


def _request_span(
    exporter: InMemorySpanExporter, request_id: str
) -> tuple[ReadableSpan, tuple[ReadableSpan, ...]]:
    spans = exporter.get_finished_spans()
    matches = [s for s in spans if s.attributes and s.attributes.get("inferd.request_id") == request_id]
    assert len(matches) == 1, [s.name for s in spans]
    return matches[0], spans


@pytest.mark.parametrize("protocol", ["http", "grpc", "grpc-stream"])
def test_request_span_continues_the_callers_trace_with_queue_execute_encode(
    traced: TracedServer, protocol: str
) -> None:
    request_id = f"traced-{protocol}"
    if protocol == "http":
        client = httpclient.InferenceServerClient(traced.http)
        client.infer(
            "ident", _inputs(httpclient), request_id=request_id, headers={"traceparent": TRACEPARENT}
        )
    elif protocol == "grpc":
        grpc = grpcclient.InferenceServerClient(traced.grpc)
        grpc.infer("ident", _inputs(grpcclient), request_id=request_id, headers={"traceparent": TRACEPARENT})
    else:  # ModelStreamInfer: the stream's metadata carries the caller's trace for each request
        results: queue.Queue[object] = queue.Queue()
        stream = grpcclient.InferenceServerClient(traced.grpc)
        stream.start_stream(
            lambda result, error: results.put(error or result), headers={"traceparent": TRACEPARENT}
        )
        try:
            stream.async_stream_infer("ident", _inputs(grpcclient), request_id=request_id)
            answer = results.get(timeout=30)
        finally:
            stream.stop_stream()
        assert not isinstance(answer, Exception), answer
    span, spans = _request_span(traced.exporter, request_id)
    assert span.name == "infer ident" and span.kind == SpanKind.SERVER
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.attributes is not None and span.attributes["rpc.system"] == protocol.split("-")[0]
    children = _children(spans, span)
    assert set(children) == {"queue", "execute", "encode"}
    for child in children.values():
        assert child.start_time is not None and child.end_time is not None and span.start_time is not None
        assert span.start_time <= child.start_time <= child.end_time
    execute = children["execute"]
    assert [link.context.span_id for link in execute.links] == [span.context.span_id]
    assert execute.attributes is not None and execute.attributes["inferd.batch.rows"] == 1


def test_an_inline_execution_has_the_same_spans(traced: TracedServer) -> None:
    client = httpclient.InferenceServerClient(traced.http)
    for index in range(4):  # the first runs of the shape are measured on the worker, later ones inline
        client.infer("inline", _inputs(httpclient), request_id=f"inline-{index}")
    stats = client.get_inference_statistics("inline")["model_stats"][0]
    assert stats["execution_count"] == 4
    inline = value(scrape(traced.http), "inferd_inline_executions_total", model="inline", version="1")
    assert inline >= 1
    for index in range(4):  # worker and inline runs alike
        span, spans = _request_span(traced.exporter, f"inline-{index}")
        children = _children(spans, span)
        assert set(children) == {"queue", "execute", "encode"}
        assert span.context is not None
        execute = children["execute"]
        assert [link.context.span_id for link in execute.links] == [span.context.span_id]
        assert execute.attributes is not None and execute.attributes["inferd.batch.rows"] == 1


def test_a_merged_batch_has_one_execute_span_linked_to_every_request(traced: TracedServer) -> None:
    clients = [httpclient.InferenceServerClient(traced.http) for _ in range(4)]
    start = threading.Barrier(len(clients))

    def send(client: httpclient.InferenceServerClient, request_id: str) -> None:
        start.wait()
        client.infer("slow", _inputs(httpclient), request_id=request_id)

    def burst(round_: int) -> None:
        with ThreadPoolExecutor(len(clients)) as pool:
            sent = [pool.submit(send, c, f"burst-{round_}-{i}") for i, c in enumerate(clients)]
            for future in sent:
                future.result()

    # The first request runs at once; the others queue behind it and merge. A slow machine may still
    # serialize a burst, so try a few (bounded) until a merged execution shows up.
    merged: list[ReadableSpan] = []
    for round_ in range(10):
        burst(round_)
        merged = [
            s for s in traced.exporter.get_finished_spans() if s.name == "execute" and len(s.links) >= 2
        ]
        if merged:
            break
    assert merged, "no burst was ever batched"
    execute = merged[0]
    linked = {link.context.span_id for link in execute.links}
    requests = {
        s.context.span_id
        for s in traced.exporter.get_finished_spans()
        if s.name == "infer slow" and s.context
    }
    assert linked <= requests
    assert execute.parent is not None and execute.parent.span_id in linked
    assert execute.attributes is not None and execute.attributes["inferd.batch.requests"] == len(linked)


def test_a_failed_request_span_records_the_error(traced: TracedServer) -> None:
    client = httpclient.InferenceServerClient(traced.http)
    wrong = httpclient.InferInput("INPUT0", [1, 4], "INT32")
    wrong.set_data_from_numpy(np.ones((1, 4), dtype=np.int32))
    with pytest.raises(InferenceServerException):
        client.infer("ident", [wrong], request_id="traced-bad")
    span, _ = _request_span(traced.exporter, "traced-bad")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["inferd.error.kind"] == "invalid_argument"
    assert span.parent is None  # no traceparent sent: a new trace


def test_with_tracing_off_no_opentelemetry_module_is_loaded_by_the_server(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from inferd.settings import Settings; from inferd.app import Server; "
        f"Server(Settings(model_repository={str(tmp_path)!r})); "
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_trace_settings_choose_which_requests_get_spans(traced: TracedServer) -> None:
    """Triton's trace extension over these spans: a model's trace_rate and trace_level, then cleared."""
    client = httpclient.InferenceServerClient(traced.http)

    def traced_ids(prefix: str, count: int) -> list[str]:
        for index in range(count):
            client.infer("ident", _inputs(httpclient), request_id=f"{prefix}-{index}")
        spans = traced.exporter.get_finished_spans()
        ids = [str(s.attributes.get("inferd.request_id")) for s in spans if s.attributes]
        return sorted(i for i in ids if i.startswith(prefix + "-"))

    assert client.get_trace_settings(model_name="ident")["trace_level"] == ["TIMESTAMPS"]
    client.update_trace_settings(model_name="ident", settings={"trace_rate": "2"})
    try:
        assert traced_ids("rate", 4) == ["rate-1", "rate-3"]
        client.update_trace_settings(model_name="ident", settings={"trace_level": ["OFF"]})
        assert traced_ids("off", 2) == []
        with pytest.raises(InferenceServerException, match="inferd never traces tensors"):
            client.update_trace_settings(settings={"trace_level": ["TENSORS"]})
    finally:
        client.update_trace_settings(model_name="ident", settings={"trace_rate": None, "trace_level": None})
    assert traced_ids("back", 2) == ["back-0", "back-1"]
