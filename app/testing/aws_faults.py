"""A pass-through HTTP proxy in front of the moto server that can refuse chosen AWS actions.

Moto answers every call it knows; real AWS sometimes does not (a policy edit that broke
the bot's permissions, an outage). The worker talks to AWS through this proxy, so a test
can make `RemoveUserFromGroup` fail the way AWS would, with AWS's own error body, and
then heal it, without touching Latchkey's code.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


# Which of its accounts moto serves a request from (moto server mode).
MOTO_ACCOUNT_HEADER = "x-moto-account-id"


@dataclass(frozen=True)
class Refusal:
    code: str
    status: int
    message: str


def action_of(headers: Any, body: bytes) -> str:
    """The AWS action of a call: X-Amz-Target for JSON APIs, the Action form field for query APIs."""
    target = headers.get("X-Amz-Target")
    if target:
        return str(target).rpartition(".")[2]
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return form.get("Action", [""])[0]


def error_body(refusal: Refusal, json_protocol: bool) -> tuple[str, bytes]:
    if json_protocol:
        payload = {"__type": refusal.code, "message": refusal.message}
        return "application/x-amz-json-1.1", json.dumps(payload).encode()
    xml = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{refusal.code}</Code><Message>{refusal.message}</Message>"
        "</Error><RequestId>latchkey-fault-proxy</RequestId></ErrorResponse>"
    )
    return "text/xml", xml.encode()


class AwsFaultProxy:
    def __init__(self, upstream: str, account: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        # moto's account for every relayed call (its x-moto-account-id header): one moto
        # process holds the state of every stack in it, kept apart by account.
        self.account = account
        self._refusals: dict[str, Refusal] = {}
        # Seconds to hold a call of an action before relaying it: a slow AWS.
        self._delays: dict[str, float] = {}
        self._seen: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the proxy first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def refuse(
        self,
        action: str,
        *,
        code: str = "AccessDenied",
        status: int = 403,
        message: str = "User: arn:aws:iam::123456789012:user/latchkey is not authorized",
    ) -> None:
        with self._lock:
            self._refusals[action] = Refusal(code, status, message)

    def delay(self, action: str, seconds: float) -> None:
        """Hold every later call of `action` this long before relaying it to moto."""
        with self._lock:
            self._delays[action] = seconds

    def heal(self, action: str | None = None) -> None:
        with self._lock:
            if action is None:
                self._refusals.clear()
                self._delays.clear()
            else:
                self._refusals.pop(action, None)
                self._delays.pop(action, None)

    def refused(self, action: str) -> int:
        """How many calls of `action` were refused so far."""
        with self._lock:
            return self._refused[action]

    def seen(self, action: str) -> int:
        with self._lock:
            return self._seen[action]

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # requests are not worth a log line
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = action_of(self.headers, body)
                with proxy._lock:
                    proxy._seen[action] += 1
                    refusal = proxy._refusals.get(action)
                    if refusal is not None:
                        proxy._refused[action] += 1
                    # A refusal answers at once, as AWS does; only relayed calls are slow.
                    pause = 0.0 if refusal is not None else proxy._delays.get(action, 0.0)
                if pause:
                    time.sleep(pause)
                if refusal is not None:
                    json_protocol = bool(self.headers.get("X-Amz-Target"))
                    content_type, payload = error_body(refusal, json_protocol)
                    self._answer(refusal.status, {"Content-Type": content_type}, payload)
                    return
                forward = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body if body or self.command not in ("GET", "HEAD") else None,
                    method=self.command,
                    headers={
                        **{k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP},
                        **({MOTO_ACCOUNT_HEADER: proxy.account} if proxy.account else {}),
                    },
                )
                try:
                    with urllib.request.urlopen(forward, timeout=30) as response:
                        self._answer(response.status, dict(response.headers), response.read())
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, dict(exc.headers), exc.read())

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # Polls every 50 ms, not the default 500: stop() waits for the poll, once per test.
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="aws-faults", daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
