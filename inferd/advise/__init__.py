"""``inferd advise``: the configuration that meets a p99 target at the least cost, measured here
(docs/optimize.md)."""
