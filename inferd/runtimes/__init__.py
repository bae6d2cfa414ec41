"""Runtimes run one batch of one model; they know nothing of transports or queues."""
