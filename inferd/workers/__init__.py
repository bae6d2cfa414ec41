"""``inferd serve --workers N``: N worker processes sharing the REST and gRPC ports under one supervisor
(docs/deploy.md#one-machine-workers)."""
