"""The API's edge: what a call must be before anything parses it or acts on it.

In order, each step before the next reads anything more: a known path (else 404) and
method (else 405); a bearer token that is a Latchkey client token (else 401, unread);
the client it belongs to, vouched for by the keyed trail and not revoked (else 401); for a
body, a declared length within LATCHKEY_MAX_BODY_BYTES (else 413, unread), then a JSON
object (else 400). Every answer is JSON: `{"error": "…"}` naming the problem, with
`fields` when input was at fault.

Refusals of a known client are audited (`api_refused`, actor `svc:<name>`); a call with no
token or an unknown one is only logged, as the Slack edge logs unsigned requests: an
anonymous caller must not be able to write to the audit chain. Nothing of the token, the
body or the credentials is ever logged.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from app.api import requests as endpoints
from app.api.idempotency import key_problem
from app.api.requests import ApiError
from app.clients.store import Client, authenticate
from app.clients.tokens import bearer_token
from app.logs import log_context
from app.runtime import Runtime

log = logging.getLogger(__name__)
StartResponse = Callable[..., Any]

PREFIX = "/api/"
_ONE = re.compile(r"^/api/requests/([^/]+)$")
_STATUS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}


def handles(path: str) -> bool:
    return path == PREFIX.rstrip("/") or path.startswith(PREFIX)


def serve(rt: Runtime, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
    with log_context(request_id=uuid.uuid4().hex[:12]):
        try:
            status, body = _route(rt, environ, path, method)
        except ApiError as refusal:
            status, body = refusal.status, refusal.body()
            log.info("api %s %s refused %d: %s", method, _route_name(path), status, refusal)
        payload = json.dumps(body).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),  # credentials may be in it
        ]
        if status == 405:
            headers.append(("Allow", "POST" if path == "/api/requests" else "GET"))
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="latchkey"'))
        start_response(f"{status} {_STATUS.get(status, 'Error')}", headers)
        return [payload]


def _route_name(path: str) -> str:
    """The path as logged: the id of one request is fine, anything else is not echoed."""
    if path == "/api/requests" or _ONE.match(path):
        return path[:80]
    return "(unknown path)"


def _route(
    rt: Runtime, environ: dict[str, Any], path: str, method: str
) -> tuple[int, dict[str, Any]]:
    one = _ONE.match(path)
    if path == "/api/requests":
        if method != "POST":
            raise ApiError(405, "use POST to make a request")
        client = _client(rt, environ)
        key = environ.get("HTTP_IDEMPOTENCY_KEY")
        problem = key_problem(key)
        if problem:
            raise ApiError(400, problem, {"Idempotency-Key": problem})
        body = _json_body(rt, environ)
        with log_context(user=client.requester_id):
            return endpoints.submit(rt, client, body, key)
    if one is not None:
        if method != "GET":
            raise ApiError(405, "use GET to read a request")
        client = _client(rt, environ)
        with log_context(user=client.requester_id):
            return endpoints.status(rt, client, one.group(1))
    raise ApiError(404, "no such endpoint: POST /api/requests, GET /api/requests/{id}")


def _client(rt: Runtime, environ: dict[str, Any]) -> Client:
    """The caller, from its bearer token; 401 for anyone else."""
    token, problem = bearer_token(environ.get("HTTP_AUTHORIZATION"))
    if token is None:
        raise ApiError(401, problem or "no token")
    with rt.db.session() as session:
        client = authenticate(session, rt.audit, token)
    if client is None:
        raise ApiError(401, "unknown token: no service client has it")
    if client.revoked_at is not None:
        endpoints.audit_refusal(rt, client, "token revoked")
        raise ApiError(401, f"this token was revoked (service client {client.name})")
    return client


def _json_body(rt: Runtime, environ: dict[str, Any]) -> dict[str, Any]:
    """The body as a JSON object, read only when its declared size is within the limit."""
    limit = rt.settings.max_body_bytes
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        raise ApiError(411, "send the body with a Content-Length") from None
    if length < 0 or length > limit:
        raise ApiError(413, f"the body is over {limit} bytes")
    raw = environ["wsgi.input"].read(length)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body
