"""Per-model queues, dynamic batching and instance dispatch, between the data plane and runtimes."""
