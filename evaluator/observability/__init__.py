"""Prometheus metrics and worker liveness: sample files per host, metric families, heartbeats, scrape collectors."""
