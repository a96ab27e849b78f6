"""gunicorn settings of `latchkey web` (`gunicorn -c python:app.gunicorn_conf`).

Every one can be overridden without a code change through GUNICORN_CMD_ARGS, which
gunicorn reads after this file, e.g. `GUNICORN_CMD_ARGS="--timeout 60 --threads 16"`.
"""

from __future__ import annotations

import os
from typing import Any

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


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended (placeholder: Prometheus' multiprocess mode marks it dead here)."""
