"""The HTTP service: app, request bodies and problems, micro-batching, workers, connections, metrics."""
