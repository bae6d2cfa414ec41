"""Model repository: where models come from, their configuration, and which are loaded."""
