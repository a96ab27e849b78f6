"""gunicorn settings of `latchkey web` (`gunicorn -c python:app.gunicorn_conf`).

Every one can be overridden without a code change through GUNICORN_CMD_ARGS, which
gunicorn reads after this file, e.g. `GUNICORN_CMD_ARGS="--timeout 60 --threads 16"`.
"""

from __future__ import annotations

import os
from typing import Any

from app.metrics.exposition import gunicorn_child_exit, gunicorn_on_exit, gunicorn_on_starting

bind = f"0.0.0.0:{os.environ.get('PORT', '3000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = 8

# Slack's requests are small: a short request line, a few headers. Anything larger is
# refused by gunicorn before the app sees it (docs/operations.md, "The Slack edge").
limit_request_line = 2048
limit_request_fields = 50
limit_request_field_size = 4096

# A worker silent this long is restarted; a request waits on nothing that slow.
timeout = 30
graceful_timeout = 20
keepalive = 5

# No access log: app.slack.edge logs one bounded line per request itself, so nothing a
# client sends (user agent, referer, query) reaches the log unescaped.
accesslog = None


def on_starting(server: Any) -> None:
    """Before any worker starts: an empty PROMETHEUS_MULTIPROC_DIR (or a fresh temporary
    one), so /metrics adds up every worker's counters and none of a previous run's."""
    gunicorn_on_starting(server)


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended: Prometheus' multiprocess mode stops counting its gauges."""
    gunicorn_child_exit(server, worker)


def on_exit(server: Any) -> None:
    """gunicorn stops: remove the temporary metrics folder we made."""
    gunicorn_on_exit(server)
