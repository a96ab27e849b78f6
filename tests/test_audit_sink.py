"""The SIEM webhook: every event delivered at least once, in chain order, signed; stdout lines."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.audit import AuditLog
from app.audit.sink import Webhook, deliver
from app.db import Database, utcnow
from app.models import AuditDelivery
from app.testing.receiver import AuditReceiver

SECRET = "siem-shared-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[AuditReceiver]:
    local = AuditReceiver(SECRET, fail_first=2).start()
    yield local
    local.stop()


def _write(db: Database, audit: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with db.session() as session:
            audit.append(session, event="requested", actor=f"U{i:04d}", request_id=None)


def test_failed_deliveries_are_retried_until_every_event_arrives_in_order(
    database: Database, audit: AuditLog, receiver: AuditReceiver
) -> None:
    _write(database, audit, 250)
    webhook = Webhook(receiver.url, SECRET.encode(), {"Authorization": "Bearer siem"})
    assert deliver(database, webhook) == 0  # the receiver fails: nothing is lost, nothing moves
    assert deliver(database, webhook) == 0  # still backing off
    later = utcnow() + timedelta(minutes=10)
    assert deliver(database, webhook, now=later) == 0  # second failure
    assert deliver(database, webhook, now=later + timedelta(minutes=10)) == 250
    _write(database, audit, 5, start=250)
    assert deliver(database, webhook) == 5
    assert receiver.seqs() == list(range(1, 256))
    assert receiver.bad_signatures == 0 and receiver.attempts == 2 + 2 + 1


def test_a_wrong_secret_is_refused_by_the_receiver(
    database: Database, audit: AuditLog, receiver: AuditReceiver
) -> None:
    receiver.fail_first = 0
    _write(database, audit, 3)
    assert deliver(database, Webhook(receiver.url, b"not-the-shared-secret", {})) == 0
    assert receiver.bad_signatures == 1 and receiver.events == []


def test_stdout_lines_are_written_for_committed_events_only(database: Database) -> None:
    out = io.StringIO()
    audit = AuditLog(b"stdout-audit-key-0123456789", out)
    with database.session() as session:
        audit.append(session, event="requested", actor="U0SAM", details={"reason": "<!here>"})
        audit.append(session, event="approved", actor="U0ANN")
    with pytest.raises(RuntimeError), database.session() as session:
        audit.append(session, event="granted", actor="latchkey")
        raise RuntimeError("the transaction fails after the append")
    lines = [json.loads(line)["latchkey_audit"] for line in out.getvalue().splitlines()]
    assert [(line["seq"], line["event"]) for line in lines] == [(1, "requested"), (2, "approved")]
    assert lines[0]["details"] == {"reason": "<!here>"} and len(lines[1]["hash"]) == 64


class _Recorder:
    """A local HTTP server answering every request with `status` (and `Location`), recording
    the method, path and headers it received."""

    def __init__(self, status: int, location: str | None = None) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/audit"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_delivery_and_never_followed(
    database: Database, audit: AuditLog, status: int
) -> None:
    elsewhere = _Recorder(200)
    redirecting = _Recorder(status, location=elsewhere.url.replace("/audit", "/collect"))
    try:
        _write(database, audit, 3)
        webhook = Webhook(redirecting.url, SECRET.encode(), {"Authorization": "Bearer siem"})
        assert deliver(database, webhook) == 0
        with database.session() as session:
            cursor = session.get(AuditDelivery, "webhook")
            assert cursor is not None
            assert (cursor.last_seq, cursor.failures) == (0, 1)
            assert cursor.next_attempt_at is not None  # backs off like any failure
            assert f"HTTP {status}" in (cursor.last_error or "")
        # Retried after the backoff: refused again, still nothing sent elsewhere.
        assert deliver(database, webhook, now=utcnow() + timedelta(minutes=10)) == 0
        assert [r[0] for r in redirecting.requests] == ["POST", "POST"]
        assert elsewhere.requests == []  # neither the body nor the Authorization header left
    finally:
        redirecting.stop()
        elsewhere.stop()
