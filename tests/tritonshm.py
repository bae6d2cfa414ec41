"""tritonclient's POSIX shared memory helpers, importable whatever the setuptools version."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SHIMS = Path(__file__).parent / "shims"


def shared_memory() -> ModuleType:
    """``tritonclient.utils.shared_memory``; with tests/shims on the path when pkg_resources is gone."""
    if importlib.util.find_spec("pkg_resources") is None and str(SHIMS) not in sys.path:
        sys.path.append(str(SHIMS))
    import tritonclient.utils.shared_memory as module

    return module
