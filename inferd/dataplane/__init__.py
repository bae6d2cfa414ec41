"""The transport-independent core that both front-ends call."""
