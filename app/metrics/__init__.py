"""Prometheus metrics: what the DB says at scrape time, plus each process's own counters.

- `app.metrics.db`: a collector that asks the DB at every scrape (grants active, pending
  requests, overdue grants, heartbeat ages, audit webhook lag), so every replica reports
  the same truth.
- `app.metrics.process`: counters and histograms of events this process saw (requests
  decided, provider and Slack errors, task failures, revoke lag, approve-to-access time).
- `app.metrics.exposition`: the registry served at `GET /metrics`, and the
  multiprocess directory that adds up the counters of gunicorn workers and Celery pool
  processes.
"""
