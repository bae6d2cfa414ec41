"""Prometheus metrics: every collector in one injected object (no module-level registries)."""
