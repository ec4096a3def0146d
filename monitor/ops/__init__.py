"""Watchkeeper watched: Prometheus metrics and Kubernetes-style health probes on one port (`[ops] port`).

- `monitor.ops.metrics`: the counters and histograms the data path updates (each worker process writes its
  own, aggregated at scrape time in multiprocess mode);
- `monitor.ops.state`: gauges read from the database at scrape time (lag, alerts, outbox, review queue,
  shadow replays, reference health), so they are right whichever process did the work;
- `monitor.ops.health`: what `/livez` and `/readyz` check;
- `monitor.ops.server`: the HTTP server that serves the three paths.
"""
