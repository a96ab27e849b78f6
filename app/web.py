"""The web process: Bolt over HTTP at POST /slack/events, GET /livez (liveness), GET
/readyz (readiness; /healthz is its alias) and the service clients' API under /api/, as
one WSGI app.

Everything a request needs is built when the process (each gunicorn worker) starts, so
the first `/access` opens its modal well inside Slack's 3-second trigger window. Slack
being down or refusing the token at start does not stop the process: /healthz says so
under "slack" until Slack answers `auth.test` (retried in the background).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import text

from app.api import http as api_http
from app.config import get_settings
from app.health import check
from app.identity_links import pages as identity_pages
from app.metrics.exposition import MetricsEndpoint, build_registry
from app.passkeys import pages as passkey_pages
from app.runtime import Runtime, build_runtime
from app.slack.app import BotIdentity, create_app
from app.slack.edge import SlackEdge

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# How long a starting process waits for Slack's first answer before serving anyway.
IDENTITY_WAIT_SECONDS = 3.0


def health(rt: Runtime, identity: BotIdentity | None = None) -> tuple[int, dict[str, Any]]:
    """200 when Latchkey is doing its job (see app.health) and Slack has answered, else 503."""
    also = {"slack": identity.state} if identity is not None else None
    ok, body = check(rt.db, rt.settings, also=also)
    return (200 if ok else 503), body


def warm(rt: Runtime) -> None:
    """Build now what the first request would otherwise build: the DB pool's first
    connection, the task queue (Celery), the Slack directory."""
    try:
        with rt.db.session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # /healthz reports the database; serving starts regardless
        log.warning("database not answering at start (%s)", type(exc).__name__)
    rt.tasks  # noqa: B018 - cached_property: builds the Celery app
    rt.directory  # noqa: B018


def create_wsgi(rt: Runtime, identity: BotIdentity | None = None) -> Wsgi:
    # The directory asks auth.test for the workspace on first use: ask it at start instead.
    identity = identity or BotIdentity(rt.slack, on_known=rt.directory.workspace).start(
        wait=IDENTITY_WAIT_SECONDS
    )
    slack = SlackEdge(
        create_app(rt, identity=identity),
        signing_secret=rt.settings.slack_signing_secret.get_secret_value(),
        max_body_bytes=rt.settings.max_body_bytes,
    )
    warm(rt)
    metrics = MetricsEndpoint(build_registry(rt.db, rt.settings))

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics" and environ.get("REQUEST_METHOD") == "GET":
            return metrics(environ, start_response)  # Prometheus; not for the internet
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path == "/livez" and method == "GET":
            # Liveness: this process serves. Nothing else, so a probe never restarts it
            # for a database, broker or overdue grant it cannot fix by restarting.
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
            return [b"ok\n"]
        if path in ("/readyz", "/healthz") and method == "GET":  # /healthz: readiness
            status, body = health(rt, identity)
            payload = json.dumps(body).encode()
            start_response(
                f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
            )
            return [payload]
        if path and passkey_pages.handles(path):  # people's own pages (LATCHKEY_PUBLIC_URL)
            return passkey_pages.serve(rt, environ, start_response)
        if path and identity_pages.handles(path):
            return identity_pages.serve(rt, environ, start_response)
        if path and api_http.handles(path):  # service clients (app.api)
            return api_http.serve(rt, environ, start_response)
        return slack(environ, start_response)

    return wsgi


def wsgi() -> Wsgi:
    """gunicorn's factory: `gunicorn 'app.web:wsgi()'`. gunicorn calls it in each worker as
    the worker boots, before it accepts a connection: runtime, Bolt app and warm-up are
    ready before the first request."""
    from app.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    # `latchkey web` checked Redis before starting gunicorn; a worker restarted during a
    # Redis outage must still serve (requests are stored, the sweep finds them later).
    return create_wsgi(build_runtime(settings, require_broker=False))
