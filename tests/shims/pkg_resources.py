"""The one call tritonclient.utils.shared_memory (2.41) makes of setuptools' pkg_resources, which
setuptools >= 81 no longer ships: the path of a file inside a package. Put this directory on
sys.path (tests/tritonshm.py does) only where pkg_resources is missing."""

from __future__ import annotations

from importlib.resources import files


def resource_filename(package: str, name: str) -> str:
    return str(files(package) / name)
