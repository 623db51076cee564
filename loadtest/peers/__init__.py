"""Peer comparison (issue #4): Ringlog against Redis Streams, NATS JetStream and
RabbitMQ streams on the same four workloads, each peer on loopback in a
temporary directory. Run it with `python -m loadtest.peers`."""
