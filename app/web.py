"""The web process: Bolt over HTTP at POST /slack/events and GET /healthz, as one WSGI app."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text

from app.config import get_settings
from app.runtime import Runtime, build_runtime
from app.slack.app import create_app

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


def health(rt: Runtime) -> tuple[int, dict[str, str]]:
    """Ready when the DB answers and the broker accepts connections."""
    checks: dict[str, str] = {}
    try:
        with rt.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        import redis

        redis.Redis.from_url(rt.settings.redis_url, socket_timeout=2).ping()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
    status = 200 if all(v == "ok" for v in checks.values()) else 503
    return status, {"status": "ok" if status == 200 else "unavailable", **checks}


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
