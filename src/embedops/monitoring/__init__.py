"""Metrics of batch jobs (and, with the service, of requests): Prometheus, shared names."""
