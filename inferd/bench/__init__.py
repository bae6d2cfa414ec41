"""``inferd bench``: an MLPerf-style load generator for any Open Inference Protocol server.

It talks to servers only over the wire (REST or gRPC), so it imports none of the server's internals.
"""
