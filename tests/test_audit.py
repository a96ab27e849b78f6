from __future__ import annotations

import threading

from sqlalchemy import text

from app.audit import AuditLog
from app.db import Database
from tests.factories import AUDIT_KEY


def _write(db: Database, audit: AuditLog, n: int) -> None:
    for i in range(n):
        with db.session() as session:
            audit.append(
                session, event="requested", actor=f"U{i}", details={"reason": f"<!channel> {i}"}
            )


def test_intact_chain_verifies(database: Database, audit: AuditLog) -> None:
    _write(database, audit, 5)
    with database.session() as session:
        result = audit.verify(session)
    assert result.ok and result.checked == 5


def test_altered_event_is_named(database: Database, audit: AuditLog) -> None:
    _write(database, audit, 5)
    with database.session() as session:
        session.execute(text("UPDATE audit_event SET actor = 'U-evil' WHERE seq = 3"))
    with database.session() as session:
        result = audit.verify(session)
    assert not result.ok and result.bad_seq == 3 and "altered" in result.message


def test_deleted_event_is_named(database: Database, audit: AuditLog) -> None:
    _write(database, audit, 5)
    with database.session() as session:
        session.execute(text("DELETE FROM audit_event WHERE seq = 2"))
    with database.session() as session:
        result = audit.verify(session)
    assert not result.ok and "event 2 is missing" in result.message


def test_rechaining_without_the_key_is_detected(database: Database, audit: AuditLog) -> None:
    _write(database, audit, 3)
    forger = AuditLog(b"a-different-key-guessed-by-someone")
    with database.session() as session:
        session.execute(text("DELETE FROM audit_event WHERE seq = 3"))
        forger.append(session, event="revoked", actor="U-evil")
    with database.session() as session:
        result = AuditLog(AUDIT_KEY.encode()).verify(session)
    assert not result.ok and result.bad_seq == 3


def test_concurrent_writers_leave_one_chain(database: Database, audit: AuditLog) -> None:
    threads = [
        threading.Thread(target=_write, args=(Database(database.url), audit, 5)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with database.session() as session:
        result = audit.verify(session)
    assert result.ok and result.checked == 40
