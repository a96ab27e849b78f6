"""The SIEM webhook: every event delivered at least once, in chain order, signed; stdout lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from app.audit import AuditLog
from app.audit.sink import Webhook, deliver
from app.db import Database, utcnow
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
