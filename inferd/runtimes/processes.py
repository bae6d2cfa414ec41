"""Python model instances in worker processes (``instance_kind: process``), as Triton's Python backend.

Each instance is a fresh interpreter (inferd/runtimes/procworker.py) started with ``subprocess``
(fork+exec: nothing of the threaded server is inherited). The server's worker thread of the instance
writes the batch into the instance's request region, sends its layout over a socket and blocks until
the reply; outputs are copied out of the response region. Both regions are reused and grown as needed.

When a worker dies (a segfault, ``os._exit``, the OOM killer, or the kill of an execution timeout),
the server sees the socket close: the batch it held fails with ``InstanceCrashed`` (500), the event is
logged and counted (``restarts``, inferd_instance_restarts_total) and a new worker is started, which
loads the model again. Batches for that instance wait for it; if the load fails, they fail at once
and the load is retried with a growing delay while ``healthy`` is False (the model is not READY).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import inferd
from inferd import errors
from inferd.errors import ExecutionError, InferdError, InstanceCrashed, ModelLoadError, Unavailable
from inferd.model_config import PythonOptions
from inferd.runtimes import channel
from inferd.runtimes.base import RuntimeSettings, Signature
from inferd.runtimes.procworker import spec_of
from inferd.runtimes.python import stream_parameters
from inferd.runtimes.request_parameters import ModelParameters
from inferd.runtimes.response_parameters import checked_parameters, with_parameters
from inferd.runtimes.shm import Region, new_shared_file
from inferd.types import TensorSpec

log = logging.getLogger(__name__)

# How long a closed worker gets to exit by itself before it is killed.
_EXIT_GRACE_S = 2.0
# Delays between attempts to restart a worker whose model fails to load again.
_RETRY_FIRST_S = 1.0
_RETRY_MAX_S = 30.0


# The worker imports the same inferd as the server, wherever it was imported from.
_WORKER_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        p for p in (str(Path(inferd.__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")) if p
    ),
}


class _State(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"  # a restart could not load the model; retried in the background
    CLOSED = "closed"


class ProcessRuntime:
    platform = "python"
    device_kind = "KIND_CPU"
    instance_kind = "process"

    def __init__(self, path: Path, settings: RuntimeSettings, options: PythonOptions) -> None:
        version_dir = path.parent
        label = f"{version_dir.parent.name}/{version_dir.name}"
        spec = spec_of(path, settings, options.class_name, label)
        self._workers = [_Worker(label, index, spec) for index in range(settings.instances)]
        try:
            for worker in self._workers:
                worker.spawn()
            signatures = [worker.handshake() for worker in self._workers]
        except BaseException:
            self.close()
            raise
        self._signature = signatures[0]

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def decoupled(self) -> bool:
        """Whether the model has its own ``predict_stream`` (its worker said so when it loaded)."""
        return self._workers[0].decoupled

    @property
    def takes_parameters(self) -> bool:
        """Whether the model's ``predict`` takes the request's parameters (its worker said so)."""
        return self._workers[0].takes_parameters

    @property
    def stream_takes_parameters(self) -> bool:
        return self._workers[0].stream_takes_parameters

    @property
    def instances(self) -> int:
        return len(self._workers)

    @property
    def restarts(self) -> int:
        """Worker processes restarted since the load (each after a crash or an execution timeout)."""
        return sum(worker.restarts for worker in self._workers)

    @property
    def healthy(self) -> bool:
        """False while an instance's worker could not be started again."""
        return all(worker.state is not _State.FAILED for worker in self._workers)

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self._workers if worker.pid is not None]

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        worker = self._workers[instance]
        return worker.run(inputs, {} if worker.takes_parameters else None)

    def run_parameters(
        self, instance: int, inputs: dict[str, np.ndarray], parameters: ModelParameters
    ) -> dict[str, np.ndarray]:
        return self._workers[instance].run(inputs, parameters)

    def stream(
        self, instance: int, inputs: dict[str, np.ndarray], parameters: ModelParameters | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """``predict_stream`` in the worker; the instance is held until the stream ends or is closed."""
        worker = self._workers[instance]
        return worker.stream(inputs, stream_parameters(worker.stream_takes_parameters, parameters))

    def interrupt(self, instance: int) -> None:
        """The execution on ``instance`` ran past its timeout: kill the worker (it restarts). Does
        not block: called on the event loop."""
        self._workers[instance].kill("was killed: its batch exceeded the execution timeout")

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        deadline = time.monotonic() + _EXIT_GRACE_S
        for worker in self._workers:
            worker.reap(deadline)


class _Worker:
    """One instance: its process (replaced when it dies), socket and shared regions."""

    def __init__(self, label: str, index: int, spec: str) -> None:
        self._label = label
        self._index = index
        self._spec = spec
        # Held by an execution from writing its inputs to reading its outputs: one batch at a time,
        # even when an abandoned execution (timeout) is still returning.
        self._io = threading.Lock()
        self._changed = threading.Condition()
        self.state = _State.STARTING
        self.decoupled = False  # set by each handshake (the model class defines predict_stream)
        # Set by each handshake too: whether predict and the stream take the request's parameters.
        self.takes_parameters = False
        self.stream_takes_parameters = False
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._requests = Region(new_shared_file())
        self._responses = Region(new_shared_file())
        self._kill_reason: str | None = None
        # Whether a batch is in the worker's hands (an interrupt kills it), else an interrupt only
        # fails the batch waiting for a restart (``_cancelled``): the load goes on.
        self._executing = False
        self._cancelled = False
        self._failure = ""
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    def spawn(self) -> None:
        """Start a worker process (it loads the model; ``handshake`` waits for it)."""
        with self._changed:
            if self.state is _State.CLOSED:
                raise Unavailable(f"model {self._label} is shutting down")
            ours, theirs = socket.socketpair()
            fds = (theirs.fileno(), self._requests.fd, self._responses.fd)
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "inferd.runtimes.procworker", self._spec, *map(str, fds)],
                    pass_fds=fds,
                    stdin=subprocess.DEVNULL,
                    env=_WORKER_ENV,
                )
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
            self._sock = ours
            self._kill_reason = None

    def handshake(self) -> Signature:
        """Wait for the new worker's model to load; ModelLoadError when it could not."""
        sock, process = self._sock, self._process
        assert sock is not None and process is not None
        try:
            reply = channel.receive(sock)
        except (OSError, ValueError):
            reply = None
        if reply is None or reply[0] != "ready":
            if reply is not None and reply[0] == "failed":
                message = str(reply[1])
            else:
                message = f"{self._label}: the worker process {_exit_of(process)} while loading the model"
            self._discard(process, sock)
            raise ModelLoadError(message)
        with self._changed:
            if self.state is _State.CLOSED:
                raise Unavailable(f"model {self._label} is shutting down")
            self.state = _State.READY
            self._changed.notify_all()
        self.decoupled = bool(reply[3])
        self.takes_parameters, self.stream_takes_parameters = bool(reply[4]), bool(reply[5])
        return _decode_signature(reply[2])

    def run(self, inputs: dict[str, np.ndarray], parameters: ModelParameters | None) -> dict[str, np.ndarray]:
        with self._io:
            sock, process = self._started()
            try:
                reply = self._request(sock, "run", inputs, parameters)
            finally:
                with self._changed:
                    self._executing = False
            if reply is None:
                raise self._crashed(process, sock, "while executing this batch")
            return self._outputs(reply)

    def stream(
        self, inputs: dict[str, np.ndarray], parameters: ModelParameters | None
    ) -> Iterator[dict[str, np.ndarray]]:
        with self._io:
            sock, process = self._started()
            try:
                reply = self._request(sock, "stream", inputs, parameters)
                while reply is not None and reply[0] != "end":
                    try:
                        yield self._outputs(reply)
                    except GeneratorExit:  # the consumer stopped: so does predict_stream
                        with contextlib.suppress(OSError):
                            channel.send(sock, ("stop",))
                        raise
                    try:
                        channel.send(sock, ("next",))
                        reply = channel.receive(sock)
                    except (OSError, ValueError):
                        reply = None
            finally:
                with self._changed:
                    self._executing = False
            if reply is None:
                raise self._crashed(process, sock, "while streaming")

    def _started(self) -> tuple[socket.socket, subprocess.Popen[bytes]]:
        """``_ready``, restarting first a worker that died while idle."""
        with self._changed:
            self._cancelled = False  # an interrupt meant for an execution that has finished
        sock, process = self._ready()
        if process.poll() is not None:  # it died while idle: restart it, then run the batch
            with self._changed:
                self._executing = False
            self._crashed(process, sock, "while idle")
            sock, process = self._ready()
        return sock, process

    def _request(
        self,
        sock: socket.socket,
        kind: str,
        inputs: dict[str, np.ndarray],
        parameters: ModelParameters | None,
    ) -> tuple[Any, ...] | None:
        """Send one request's inputs and the parameters its model gets (None: it takes inputs only,
        a dict of plain values, which marshal carries); the first reply, None when the worker is gone."""
        try:
            layout = self._requests.write(inputs)
            channel.send(sock, (kind, self._requests.size, layout, parameters))
            return channel.receive(sock)
        except (OSError, ValueError):
            return None

    def _ready(self) -> tuple[socket.socket, subprocess.Popen[bytes]]:
        """The running worker, once started; raises when it cannot take a batch."""
        with self._changed:
            while self.state is _State.STARTING and not self._cancelled:
                self._changed.wait()
            if self._cancelled:
                self._cancelled = False
                raise ExecutionError(
                    f"model {self._label}: gave up waiting for instance {self._index} to restart"
                )
            if self.state is _State.CLOSED:
                raise Unavailable(f"model {self._label} is shutting down")
            if self.state is _State.FAILED:
                raise ExecutionError(
                    f"model {self._label}: instance {self._index} is down: its worker process could "
                    f"not be restarted ({self._failure}); retrying"
                )
            sock, process = self._sock, self._process
            self._executing = True
        assert sock is not None and process is not None
        return sock, process

    def _outputs(self, reply: tuple[Any, ...]) -> dict[str, np.ndarray]:
        kind = reply[0]
        if kind == "ok":
            self._responses.follow(reply[1])
            outputs = self._responses.read(reply[2], copy=True)
            # reply[3]: the response parameters, checked in the worker and again here (it runs user code).
            return with_parameters(outputs, checked_parameters(reply[3], self._label) if reply[3] else None)
        if kind == "raised":
            # As in thread mode: the client gets the exception's type and message; the traceback,
            # with an id to find it by, goes to the server log.
            error_id = uuid.uuid4().hex[:12]
            method = str(reply[3]) if len(reply) > 3 else "predict"
            log.error(
                "model %s: %s raised (error id %s) in worker process %s:\n%s",
                self._label,
                method,
                error_id,
                self.pid,
                str(reply[2]).rstrip(),
            )
            raise ExecutionError(f"model {self._label}: {method} raised {reply[1]} (error id {error_id})")
        error = getattr(errors, str(reply[1]), None)
        # Only errors built from a message alone (the model's InvalidRequest, the output checks).
        if not (
            isinstance(error, type)
            and issubclass(error, InferdError)
            and error.__init__ is InferdError.__init__
        ):
            error = ExecutionError
        raise error(str(reply[2]))

    def _crashed(self, process: subprocess.Popen[bytes], sock: socket.socket, when: str) -> InferdError:
        """The worker died (``when``: holding a batch, or idle): start a new one; the error for the
        batch it held."""
        how = self._kill_reason or _exit_of(process)
        self._discard(process, sock)
        with self._changed:
            if self.state is _State.CLOSED:
                return Unavailable(f"model {self._label} shut down while executing the batch")
            self.state = _State.STARTING
            self.restarts += 1
        log.error(
            "model %s: the worker process of instance %d (pid %d) %s %s; it is restarted",
            self._label,
            self._index,
            process.pid,
            how,
            when,
        )
        threading.Thread(
            target=self._restart, name=f"restart-{self._label}-{self._index}", daemon=True
        ).start()
        return InstanceCrashed(
            f"model {self._label}: the worker process of instance {self._index} {how} {when}; it is "
            "being restarted"
        )

    def _restart(self) -> None:
        delay = _RETRY_FIRST_S
        while True:
            try:
                self.spawn()
                self.handshake()
            except Unavailable:
                return
            except ModelLoadError as exc:
                log.error("model %s: instance %d could not be restarted: %s", self._label, self._index, exc)
                with self._changed:
                    if self.state is _State.CLOSED:
                        return
                    self.state = _State.FAILED
                    self._failure = exc.message
                    self._changed.notify_all()
                    self._changed.wait(delay)  # close() wakes it
                    if self.state is _State.CLOSED:
                        return
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            log.info("model %s: instance %d restarted (worker pid %s)", self._label, self._index, self.pid)
            return

    def kill(self, reason: str) -> None:
        with self._changed:
            if not self._executing:
                self._cancelled = True  # the batch waits for a restart: fail it, let the load go on
                self._changed.notify_all()
                return
            process = self._process
            if process is None or process.poll() is not None:
                return
            self._kill_reason = reason
            process.kill()

    def close(self) -> None:
        """Stop the worker: closing its socket tells it to exit (``reap`` waits for it)."""
        with self._changed:
            self.state = _State.CLOSED
            self._changed.notify_all()
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes an execution still waiting on it

    def reap(self, deadline: float) -> None:
        """Wait until ``deadline`` for the closed worker to exit, then kill it."""
        process = self._process
        if process is not None:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._sock is not None:
            self._sock.close()
        self._requests.close()
        self._responses.close()

    def _discard(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        """A worker that is gone (or failed to load): make sure it is dead and reaped."""
        sock.close()
        if process.poll() is None:
            process.kill()
        process.wait()


def _exit_of(process: subprocess.Popen[bytes]) -> str:
    """How a worker process ended, in words (it is reaped here)."""
    try:
        code = process.wait(5)
    except subprocess.TimeoutExpired:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"died with {name}"
    return f"exited with code {code}"


def _decode_signature(encoded: Any) -> Signature:
    max_batch_size, inputs, outputs = encoded

    def specs(side: Any) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(str(name), str(datatype), tuple(dims)) for name, datatype, dims in side)

    return Signature(specs(inputs), specs(outputs), int(max_batch_size))


def instance_restarts(runtime: object) -> int:
    """Worker restarts of a loaded runtime (0 for runtimes without worker processes)."""
    restarts = getattr(runtime, "restarts", 0)
    return restarts if isinstance(restarts, int) else 0


def runtime_healthy(runtime: object) -> bool:
    healthy = getattr(runtime, "healthy", True)
    return healthy if isinstance(healthy, bool) else True
