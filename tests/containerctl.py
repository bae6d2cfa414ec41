"""Build inferd's image and run it with rootful podman (``--runtime runc``), as the container tests
need: the base from Debian packages (deploy/container/debian-base), then the Containerfile."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/inferd-base:bookworm"
IMAGE = "localhost/inferd:test"
BUILD_TIMEOUT_S = 900


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


def build_image() -> dict[str, float]:
    """Build the base (unless it exists: it depends only on Debian) and the image (podman's layer cache
    makes a rebuild of unchanged layers quick); returns the seconds each took."""
    took = {}
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        start = time.monotonic()
        subprocess.run(
            [str(ROOT / "deploy" / "container" / "debian-base"), BASE_IMAGE],
            check=True,
            capture_output=True,
            timeout=BUILD_TIMEOUT_S,
        )
        took["base_s"] = time.monotonic() - start
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
        "--build-arg",
        f"BASE={BASE_IMAGE}",
        *secret,
        "-t",
        IMAGE,
        "-f",
        str(ROOT / "Containerfile"),
        str(ROOT),
        check=False,
        timeout=BUILD_TIMEOUT_S,
    )
    if build.returncode != 0:
        raise AssertionError(f"podman build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    took["image_s"] = time.monotonic() - start
    return took


def ulimit_flags() -> list[str]:
    """podman raises a container's open-file and process limits past what a sandboxed host allows
    (runc then fails with 'error setting rlimits'): keep this process's own."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=4096:4096"]
