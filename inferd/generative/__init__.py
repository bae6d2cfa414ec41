"""Generative (autoregressive language) models: the engine's contract with the front-ends."""
