"""KServe V2 wire formats: pure functions between bytes/messages and core types, no I/O."""
