"""A Python model's worker process (``instance_kind: process``): one instance, one batch at a time.

Started by inferd/runtimes/processes.py as ``python -m inferd.runtimes.procworker SPEC SOCKET IN OUT``
in a fresh interpreter: it imports ``model.py`` and calls ``load`` itself, says ``ready`` with the
signature, then answers ``run`` messages until the server closes the socket. Inputs are read-only
views of the request region; outputs are checked against the signature and written to the response
region. It ignores SIGINT and SIGTERM: it lives as long as its server keeps the socket open, so the
server's graceful shutdown (not a signal sent to the whole process group) decides when it stops.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from inferd.errors import InferdError, ModelLoadError
from inferd.model import Model
from inferd.model_config import TensorOverride
from inferd.runtimes import channel
from inferd.runtimes.base import RuntimeSettings, Signature
from inferd.runtimes.python import (
    check_outputs,
    describe_exception,
    import_model_file,
    instantiate,
    is_decoupled,
    model_class,
    open_stream,
    parameter_use,
    predict,
    signature_of,
)
from inferd.runtimes.request_parameters import ModelParameters
from inferd.runtimes.response_parameters import parameters_of
from inferd.runtimes.shm import Region


def spec_of(path: Path, settings: RuntimeSettings, class_name: str | None, label: str) -> str:
    """What a worker needs to load its model, as its command line carries it."""
    return json.dumps(
        {
            "path": str(path),
            "label": label,
            "class_name": class_name,
            "max_batch_size": settings.max_batch_size,
            "inputs": [t.model_dump() for t in settings.inputs],
            "outputs": [t.model_dump() for t in settings.outputs],
        }
    )


def encode_signature(signature: Signature) -> tuple[Any, ...]:
    def specs(side: tuple[Any, ...]) -> list[tuple[str, str, tuple[int, ...]]]:
        return [(s.name, s.datatype, tuple(s.dims)) for s in side]

    return (signature.max_batch_size, specs(signature.inputs), specs(signature.outputs))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    spec = json.loads(argv[0])
    sock = socket.socket(fileno=int(argv[1]))
    requests, responses = Region(int(argv[2])), Region(int(argv[3]))
    label = spec["label"]
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [worker {label} pid {os.getpid()}] %(name)s: %(message)s",
    )
    path = Path(spec["path"])
    settings = RuntimeSettings(
        max_batch_size=spec["max_batch_size"],
        inputs=tuple(TensorOverride.model_validate(t) for t in spec["inputs"]),
        outputs=tuple(TensorOverride.model_validate(t) for t in spec["outputs"]),
    )
    try:
        cls = model_class(import_model_file(path), spec["class_name"], path)
        signature = signature_of(cls, settings, path)
        model = instantiate(cls, path.parent)
    except ModelLoadError as exc:
        channel.send(sock, ("failed", exc.message))
        return 1
    ready = ("ready", os.getpid(), encode_signature(signature), is_decoupled(cls), *parameter_use(cls))
    channel.send(sock, ready)
    while (message := channel.receive(sock)) is not None:
        # parameters: the dict the model gets, or None when it takes inputs only (the server decides).
        kind, size, layout, parameters = message
        requests.follow(size)
        inputs = requests.read(layout, copy=False)
        if kind == "run":
            channel.send(sock, _run(model, inputs, parameters, signature, label, responses))
        elif not _stream(sock, model, inputs, parameters, signature, label, responses):
            break
    return 0


def _run(
    model: Model,
    inputs: dict[str, np.ndarray],
    parameters: ModelParameters | None,
    signature: Signature,
    label: str,
    responses: Region,
) -> tuple[Any, ...]:
    """One batch: the reply to send (the outputs' layout, or what went wrong)."""
    try:
        outputs = predict(model, inputs, parameters)
    except InferdError as exc:  # the model's own verdict (say InvalidRequest): passed on as it is
        return ("error", type(exc).__name__, exc.message)
    except Exception as exc:
        return ("raised", describe_exception(exc), traceback.format_exc())
    try:
        checked = check_outputs(outputs, signature, _rows(inputs, signature), label)
    except InferdError as exc:
        return ("error", type(exc).__name__, exc.message)
    return _reply(checked, responses)


def _stream(
    sock: socket.socket,
    model: Model,
    inputs: dict[str, np.ndarray],
    parameters: ModelParameters | None,
    signature: Signature,
    label: str,
    responses: Region,
) -> bool:
    """One request to ``predict_stream``: each response is sent once the server has copied the one
    before (it answers ``next``, or ``stop`` when its consumer went away); then ``end`` or the error.
    False when the server has gone."""
    rows = _rows(inputs, signature)
    stream: Any = None
    try:
        stream = iter(open_stream(model, inputs, parameters))
        for outputs in stream:
            checked = check_outputs(outputs, signature, rows, label)
            channel.send(sock, _reply(checked, responses))
            answer = channel.receive(sock)
            if answer is None or answer[0] != "next":
                return answer is not None
    except InferdError as exc:
        channel.send(sock, ("error", type(exc).__name__, exc.message))
        return True
    except Exception as exc:
        channel.send(sock, ("raised", describe_exception(exc), traceback.format_exc(), "predict_stream"))
        return True
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    channel.send(sock, ("end",))
    return True


def _rows(inputs: dict[str, np.ndarray], signature: Signature) -> int | None:
    """The batch's rows, which every output must have too; None for a model without a batch axis."""
    return next(iter(inputs.values())).shape[0] if signature.max_batch_size > 0 and inputs else None


def _reply(checked: dict[str, np.ndarray], responses: Region) -> tuple[Any, ...]:
    """Outputs written to the shared responses region: the message that tells the server where.
    The region's size is read after the write, which may have grown it."""
    layout = responses.write(checked)
    return ("ok", responses.size, layout, parameters_of(checked))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
