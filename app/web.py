"""The web process: Bolt over HTTP at POST /slack/events and GET /healthz, as one WSGI app."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt.adapter.wsgi import SlackRequestHandler

from app.config import get_settings
from app.health import check
from app.runtime import Runtime, build_runtime
from app.slack.app import create_app

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


def health(rt: Runtime) -> tuple[int, dict[str, Any]]:
    """200 when Latchkey is doing its job (see app.health), else 503 with the problems."""
    ok, body = check(rt.db, rt.settings)
    return (200 if ok else 503), body


def create_wsgi(rt: Runtime) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    slack = SlackRequestHandler(create_app(rt))

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") == "GET":
            status, body = health(rt)
            payload = json.dumps(body).encode()
            start_response(
                f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
            )
            return [payload]
        return slack(environ, start_response)

    return wsgi


def wsgi() -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """gunicorn's factory: `gunicorn 'app.web:wsgi()'`. Builds the runtime in each worker."""
    from app.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    return create_wsgi(build_runtime(settings))
