"""Build inferd's image and run it with rootful podman (``--runtime runc``), as the container tests
need: the base from Debian packages (deploy/container/debian-base), then the Containerfile."""

from __future__ import annotations

import hashlib
import os
import random
import resource
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 900
BASE_SCRIPT = ROOT / "deploy" / "container" / "debian-base"
# What the image is made of: an image tagged with their digest is reused, so the suite builds it
# once per change (and once per CI run) and a rerun costs nothing.
_IMAGE_INPUTS = ("Containerfile", ".containerignore", "pyproject.toml", "README.md")


def unavailable() -> str | None:
    """Why containers cannot run here at all, or None."""
    if os.geteuid() != 0:
        return "the container tests need root (rootful podman, mmdebstrap)"
    missing = [tool for tool in ("podman", "mmdebstrap", "runc") if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (scripts/setup --test installs them)"
    info = podman("info", check=False, timeout=60)
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[-500:]}"
    return None


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # cgroupfs: no systemd here to manage cgroups; runc: the runtime the issue asks for.
    command = ["podman", "--cgroup-manager", "cgroupfs", "--runtime", "runc", *args]
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=timeout)


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def build_image() -> tuple[str, dict[str, float]]:
    """The image's tag, built (and its base) unless an image of the same inputs exists; with the
    seconds each build took."""
    took = {}
    base = f"localhost/inferd-base:bookworm-{_digest([BASE_SCRIPT])}"
    if not _exists(base):
        start = time.monotonic()
        subprocess.run([str(BASE_SCRIPT), base], check=True, capture_output=True, timeout=BUILD_TIMEOUT_S)
        took["base_s"] = time.monotonic() - start
    sources = [p for p in (ROOT / "inferd").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    image = f"localhost/inferd:test-{_digest([ROOT / n for n in _IMAGE_INPUTS] + sources)}-{base[-16:]}"
    if _exists(image):
        return image, took
    start = time.monotonic()
    secret = []
    # Behind a TLS-intercepting proxy (as on the machines these tests run on), pip in the build needs
    # the proxy's CA: handed in as a build secret, never stored in the image.
    certificate = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if certificate and Path(certificate).is_file():
        secret = ["--secret", f"id=pip-cert,src={certificate}"]
    build = podman(
        "build",
        "--format",
        "docker",
        # No intermediate images: committing each step's layer costs more than it saves when the
        # digest above already decides whether to build.
        "--layers=false",
        "--build-arg",
        f"BASE={base}",
        *secret,
        "-t",
        image,
        "-f",
        str(ROOT / "Containerfile"),
        str(ROOT),
        check=False,
        timeout=BUILD_TIMEOUT_S,
    )
    if build.returncode != 0:
        raise AssertionError(f"podman build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    took["image_s"] = time.monotonic() - start
    # Earlier builds' images (315 MB each) are stale now.
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/inferd").stdout.split()
    stale = [t for t in listed if t.startswith("localhost/inferd:test-") and t != image]
    if stale:
        podman("rmi", "--force", *stale, check=False)
    return image, took


def ulimit_flags() -> list[str]:
    """podman raises a container's open-file and process limits past what a sandboxed host allows
    (runc then fails with 'error setting rlimits'): keep this process's own."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    files = 65536 if files == resource.RLIM_INFINITY else files
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    processes = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", f"nproc={processes}:{processes}"]


def host_port() -> int:
    """A free host port below the kernel's ephemeral range, to publish a container's port on.

    podman's port forwarding is a DNAT rule for the host port; were a rule left behind (seen here
    after a container died at start), a later server that binds port 0 and is handed the same number
    would have its connections sent to the dead container. Ports 0 binds never come from below the
    ephemeral range, so a rule there can never capture one of them.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(10_000, max(10_001, low)), k=min(200, max(1, low - 10_000))):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between 10000 and {low}")
