"""The edge in front of Bolt: what a request must be before anything parses or logs it.

In order, each step before the next reads anything more:

1. POST to the events path, else 404 / 405;
2. a declared Content-Length within LATCHKEY_MAX_BODY_BYTES, else 413 (the body is not read);
3. Slack's signature headers present, the timestamp within five minutes, else 401;
4. the body read to at most the limit plus one byte (chunked bodies too), else 413;
5. the HMAC-SHA256 signature of `v0:{timestamp}:{body}` matching SLACK_SIGNING_SECRET
   (slack_sdk's SignatureVerifier), else 401;
6. the body parsed, once, into Bolt's request the way Bolt parses it (a form, JSON, a form
   whose `payload` is a JSON object), else 400 with a short JSON error.

Only then is the Bolt app called, with that request (not through Bolt's WSGI adapter,
which would read and parse the body again). A refusal is logged as one bounded
line (method, path, declared length, reason); nothing of the body or its headers is.

Every request gets a request id, and once the signature holds, the Slack user and (when
the payload names it) the flow are known: they ride on every log line of the request
(app.logs context). A served request is logged as one interaction line: what (command,
action_id, callback_id or event type), who, the HTTP status and the milliseconds.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_sdk.signature import Clock, SignatureVerifier

from app.logs import bind, log_context
from app.slack import ids

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

FRESHNESS_SECONDS = 5 * 60  # Slack's own rule, and SignatureVerifier's
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
}


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class Refused(Exception):
    """A request the edge will not pass on: its status and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def bolt_request(body: str, environ: dict[str, Any]) -> BoltRequest:
    """The verified body as Bolt's request, parsed once, here, the way Bolt parses it (a
    form, JSON, a form whose `payload` is a JSON object); Refused 400 when it cannot be.

    Bolt's WSGI adapter would parse it again and the edge parsed it twice more (to check it
    and to log what it was): three parses of every click on the web's one interpreter.
    """
    headers = {
        key[5:].lower().replace("_", "-"): value
        for key, value in environ.items()
        if key.startswith("HTTP_") and isinstance(value, str)
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.lower().replace("_", "-")] = str(environ[key])
    try:
        request = BoltRequest(body=body, query=environ.get("QUERY_STRING") or "", headers=headers)
    except (ValueError, TypeError, AttributeError, KeyError):
        # json.loads' JSONDecodeError is a ValueError; a JSON list or string where Bolt
        # wants an object fails in its context building instead.
        raise Refused(400, "the body is not well-formed JSON or form data") from None
    if not isinstance(request.body, dict):
        raise Refused(400, "the body is not a JSON object")
    return request


def _get(data: Any, *path: str | int) -> Any:
    """data[path[0]][path[1]]…, or None where any step is missing or of the wrong type."""
    for step in path:
        if isinstance(step, int):
            data = data[step] if isinstance(data, list) and len(data) > step else None
        else:
            data = data.get(step) if isinstance(data, dict) else None
    return data


def interaction(data: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """What a parsed request is (`command /access`, `block_actions approve`,
    `view_submission request_modal`, `event app_home_opened`…), who sent it, and the flow
    when the payload names one."""
    if "command" in data and "type" not in data:  # a slash command's form
        return f"command {data.get('command', '?')}", _str(data.get("user_id")), None
    kind = str(data.get("type") or "?")
    user = _get(data, "user", "id") or _get(data, "user_id")
    if kind == "event_callback":
        event_user = _get(data, "event", "user")
        user = _get(event_user, "id") if isinstance(event_user, dict) else event_user
        return f"event {_get(data, 'event', 'type')}", _str(user), None
    flow = _get(
        data, "view", "state", "values", ids.FLOW_BLOCK, ids.FLOW_ACTION, "selected_option", "value"
    )
    detail = (
        _get(data, "actions", 0, "action_id")
        or _get(data, "action_id")
        or _get(data, "view", "callback_id")
        or _get(data, "callback_id")
    )
    what = f"{kind} {detail}" if detail else kind
    return what, _str(user), _str(flow)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _read_at_most(stream: Any, limit: int) -> bytes:
    """Up to `limit` bytes from a WSGI input; servers may return short reads."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = stream.read(min(left, 64 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class SlackEdge:
    """A WSGI app in front of a Bolt app: only small, signed, fresh, parseable requests
    reach `app`, each parsed once."""

    def __init__(
        self,
        app: App,
        *,
        signing_secret: str,
        max_body_bytes: int,
        path: str = "/slack/events",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app, self.path, self.max_body_bytes = app, path, max_body_bytes
        self._clock = clock
        self._verifier = SignatureVerifier(signing_secret, clock=_Clock(clock))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with log_context(request_id=uuid.uuid4().hex):
            return self._serve(environ, start_response)

    def _serve(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        try:
            request = self._admit(environ)
        except Refused as refused:
            log.warning(
                "refused %s %s length=%s: %s",
                str(environ.get("REQUEST_METHOD", ""))[:10],
                str(environ.get("PATH_INFO", ""))[:100],
                str(environ.get("CONTENT_LENGTH") or "none")[:20],
                refused.reason,
            )
            return _answer(start_response, refused.status, {"error": refused.reason})
        what, user, flow = interaction(request.body)
        bind(user=user, flow=flow)
        bolt = self.app.dispatch(request)
        answer = WsgiHttpResponse(status=bolt.status, headers=bolt.headers, body=bolt.body)
        start_response(answer.status, answer.get_headers())
        status = str(bolt.status)
        elapsed = round((time.monotonic() - started) * 1000)
        log.info(
            "interaction %s user=%s status=%s length=%d in %d ms",
            what,
            user or "-",
            status,
            len(request.raw_body),
            elapsed,
            extra={"interaction": what, "status": status, "duration_ms": elapsed},
        )
        return answer.get_body()

    def _admit(self, environ: dict[str, Any]) -> BoltRequest:
        """The verified, parsed request, or Refused saying why not."""
        if environ.get("PATH_INFO") != self.path:
            raise Refused(404, "not found")
        if environ.get("REQUEST_METHOD") != "POST":
            raise Refused(405, "only POST is served here")
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared and not declared.isdigit():
            raise Refused(400, "bad content-length")
        if declared and int(declared) > self.max_body_bytes:
            raise Refused(413, f"body over {self.max_body_bytes} bytes")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE")
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP")
        if not signature or not timestamp:
            raise Refused(401, "not signed by Slack")
        if not timestamp.isdigit() or abs(self._clock() - int(timestamp)) > FRESHNESS_SECONDS:
            raise Refused(401, "stale or invalid timestamp")
        wanted = (
            min(int(declared), self.max_body_bytes + 1) if declared else self.max_body_bytes + 1
        )
        body = _read_at_most(environ["wsgi.input"], wanted)
        if len(body) > self.max_body_bytes:
            raise Refused(413, f"body over {self.max_body_bytes} bytes")
        if not self._verifier.is_valid(body, timestamp, signature):
            raise Refused(401, "bad signature")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "the body is not UTF-8") from None
        return bolt_request(text, environ)


def _answer(start_response: StartResponse, status: int, body: dict[str, str]) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(
        f"{status} {_REASONS.get(status, 'Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]
