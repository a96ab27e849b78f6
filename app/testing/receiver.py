"""A local SIEM endpoint for tests and the demo: verifies Latchkey's signature, records
events, and can be told to fail its next deliveries."""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.audit.sink import sign


class AuditReceiver:
    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret = secret.encode()
        self.fail_first = fail_first
        self.events: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.attempts = 0
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/audit"

    def seqs(self) -> list[int]:
        with self._lock:
            return [e["seq"] for e in self.events]

    def start(self) -> AuditReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = sign(receiver.secret, self.headers.get("X-Latchkey-Timestamp", ""), body)
                with receiver._lock:
                    receiver.attempts += 1
                    if not hmac.compare_digest(
                        expected, self.headers.get("X-Latchkey-Signature", "")
                    ):
                        receiver.bad_signatures += 1
                        status = 401
                    elif receiver.attempts <= receiver.fail_first:
                        status = 503
                    else:
                        delivered = json.loads(body)
                        if "latchkey_checkpoint" in delivered:
                            receiver.checkpoints.append(delivered["latchkey_checkpoint"])
                        else:
                            receiver.events += delivered["events"]
                        status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # Polls every 50 ms, not the default 500: stop() waits for the poll, once per test.
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="audit-receiver", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
