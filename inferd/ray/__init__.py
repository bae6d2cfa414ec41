"""inferd on Ray Serve: each replica runs inferd's data plane; Ray's proxies and controller do the
routing, placement and autoscaling (docs/deploy.md, "Ray Serve"). Needs the ``ray`` extra."""

from __future__ import annotations

MISSING = "Ray Serve is not installed: pip install 'inferd[ray]'"

try:
    import ray.serve  # noqa: F401
except ImportError:
    raise ImportError(MISSING) from None
