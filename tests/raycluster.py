"""A real two-node Ray cluster on this machine: the head on the host, a second node in its own network
namespace (as root), joined over a veth pair, so the second node is reached over a network."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HEAD_IP = "10.213.0.1"
NODE_IP = "10.213.0.2"


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


# `ray start` gives a new node 30 s (a constant in ray._private.node) to appear in the GCS, which a
# busy 2-core machine can miss; this runs Ray's own CLI with that lookup retried for up to 3 minutes.
_PATIENT_RAY = """
import sys, time
import ray._private.services as services
from ray.scripts.scripts import main

lookup = services.get_node

def patient(*args, **kwargs):
    deadline = time.monotonic() + 180
    while True:
        try:
            return lookup(*args, **kwargs)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)

services.get_node = patient
sys.argv[0] = "ray"
sys.exit(main())
"""


def _ray_start() -> tuple[str, ...]:
    return (sys.executable, "-c", _PATIENT_RAY, "start")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def can_run() -> str | None:
    """Why a two-node cluster cannot start here, or None."""
    if os.geteuid() != 0:
        return "a second Ray node in a network namespace needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if not Path(_ray_bin()).exists():
        return "Ray is not installed (pip install 'inferd[ray]')"
    return None


def _run(*command: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class RayCluster:
    workdir: Path
    gcs_port: int = field(default_factory=_free_port)
    # Serve's proxies keep the ports of the first deployment for the cluster's life.
    http_port: int = field(default_factory=_free_port)
    grpc_port: int = field(default_factory=_free_port)
    netns: str = field(default_factory=lambda: f"inferd-ray-{uuid.uuid4().hex[:6]}")
    _veth: str = field(default_factory=lambda: f"vr{uuid.uuid4().hex[:6]}")

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.gcs_port}"

    def env(self) -> dict[str, str]:
        # Replicas import the inferd of this checkout (PYTHONPATH) and report nothing home.
        return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": os.getcwd()}

    def start(self) -> None:
        self._network()
        common = ["--disable-usage-stats", "--num-cpus", "1"]
        head = (
            *_ray_start(), "--head", "--node-ip-address", HEAD_IP, "--port", str(self.gcs_port),
            "--include-dashboard=false", *common,
        )  # fmt: skip
        try:
            _run(*head, env=self.env())
        except RuntimeError:  # as below, for the head: nothing else runs yet, so stop all and retry
            subprocess.run([_ray_bin(), "stop", "--force"], capture_output=True, env=self.env(), timeout=120)
            _run(*head, env=self.env())
        join = (
            "ip", "netns", "exec", self.netns, *_ray_start(), "--address", self.address,
            "--node-ip-address", NODE_IP, *common,
        )  # fmt: skip
        try:
            _run(*join, env=self.env())
        except RuntimeError:
            # Ray gives a joining node 30 s to register, which a busy machine can miss: start over,
            # once, with whatever the failed start left behind in the namespace killed.
            self._kill_namespaced()
            _run(*join, env=self.env())

    def _network(self) -> None:
        peer = f"{self._veth}p"
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self._veth, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", self.netns)
        _run("ip", "addr", "add", f"{HEAD_IP}/24", "dev", self._veth)
        _run("ip", "link", "set", self._veth, "up")
        _run("ip", "netns", "exec", self.netns, "ip", "addr", "add", f"{NODE_IP}/24", "dev", peer)
        _run("ip", "netns", "exec", self.netns, "ip", "link", "set", peer, "up")
        _run("ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up")

    def _kill_namespaced(self) -> None:
        listed = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        for pid in listed.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def stop(self) -> None:
        # `ray stop` ends every Ray process on the machine, the namespaced node's included.
        subprocess.run([_ray_bin(), "stop", "--force"], capture_output=True, env=self.env(), timeout=120)
        subprocess.run(["ip", "link", "del", self._veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
