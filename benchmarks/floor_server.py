"""The floor of a Python front-end: raw ASGI on uvicorn (httptools, uvloop), orjson, ONNX Runtime.

No validation, no batching, no thread hop: parse the JSON, run the model on the event loop, answer.
With --grpc-port it also serves ModelInfer on grpc.aio the same way (raw contents in and out), the
floor of a grpc.aio front-end. benchmarks/overhead.py runs it beside inferd so the ratio between them
is measured, not remembered.

    python benchmarks/floor_server.py MODEL.onnx --port 8200 [--grpc-port 8201] [--threads N]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
import uvloop


def make_session(model_path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def make_app(session: ort.InferenceSession) -> Any:
    outputs = [o.name for o in session.get_outputs()]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # readiness probe
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = orjson.loads(body)
        feed = {
            t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"]) for t in request["inputs"]
        }
        results = session.run(outputs, feed)
        answer = orjson.dumps(
            {
                "outputs": [
                    {"name": n, "shape": list(r.shape), "data": r.reshape(-1)}
                    for n, r in zip(outputs, results, strict=True)
                ]
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


def make_grpc_server(session: ort.InferenceSession, port: int) -> Any:
    import grpc

    from inferd.protocol._generated import grpc_service_pb2 as pb
    from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc

    outputs = [o.name for o in session.get_outputs()]

    class Servicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        async def ModelInfer(self, request: Any, context: Any) -> Any:
            feed = {
                t.name: np.frombuffer(raw, dtype=np.float32).reshape(tuple(t.shape))
                for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)
            }
            results = session.run(outputs, feed)
            reply = pb.ModelInferResponse(model_name=request.model_name)
            for name, result in zip(outputs, results, strict=True):
                reply.outputs.add(name=name, shape=result.shape)
                reply.raw_output_contents.append(result.tobytes())
            return reply

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    return server


async def serve(session: ort.InferenceSession, port: int, grpc_port: int | None) -> None:
    config = uvicorn.Config(
        make_app(session),
        host="127.0.0.1",
        port=port,
        loop="none",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
        proxy_headers=False,
    )
    if grpc_port is not None:
        grpc_server = make_grpc_server(session, grpc_port)
        await grpc_server.start()
    await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--grpc-port", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: all cores)")
    args = parser.parse_args()
    uvloop.run(serve(make_session(args.model, args.threads), args.port, args.grpc_port))


if __name__ == "__main__":
    main()
