from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from app.audit import AuditLog, chain_hash
from app.db import Database, utcnow
from app.models import AuditEvent
from tests.conftest import POSTGRES_URL
from tests.factories import AUDIT_KEY


def _write(db: Database, audit: AuditLog, n: int) -> None:
    for i in range(n):
        with db.session() as session:
            audit.append(
                session, event="requested", actor=f"U{i}", details={"reason": f"<!channel> {i}"}
            )


def _as_attacker(session) -> None:  # type: ignore[no-untyped-def]
    """Someone with full DB access first switches off the append-only triggers."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        session.execute(text("DROP TRIGGER IF EXISTS audit_event_no_update"))
        session.execute(text("DROP TRIGGER IF EXISTS audit_event_no_delete"))


def test_the_application_cannot_update_or_delete_events(
    database: Database, audit: AuditLog
) -> None:
    _write(database, audit, 2)
    for statement in (
        "UPDATE audit_event SET actor = 'U-evil' WHERE seq = 1",
        "DELETE FROM audit_event WHERE seq = 2",
    ):
        with (
            pytest.raises(DBAPIError, match="audit_event is append-only"),
            database.session() as session,
        ):
            session.execute(text(statement))
    with database.session() as session:
        assert audit.verify(session).checked == 2


def test_intact_chain_verifies(database: Database, audit: AuditLog) -> None:
    _write(database, audit, 5)
    with database.session() as session:
        result = audit.verify(session)
    assert result.ok and result.checked == 5


def test_altered_event_is_named(database: Database, audit: AuditLog) -> None:
    _write(database, audit, 5)
    with database.session() as session:
        _as_attacker(session)
        session.execute(text("UPDATE audit_event SET actor = 'U-evil' WHERE seq = 3"))
    with database.session() as session:
        result = audit.verify(session)
    assert not result.ok and result.bad_seq == 3 and "altered" in result.message


def test_deleted_event_is_named(database: Database, audit: AuditLog) -> None:
    _write(database, audit, 5)
    with database.session() as session:
        _as_attacker(session)
        session.execute(text("DELETE FROM audit_event WHERE seq = 2"))
    with database.session() as session:
        result = audit.verify(session)
    assert not result.ok and "event 2 is missing" in result.message


def test_rechaining_without_the_key_is_detected(database: Database, audit: AuditLog) -> None:
    _write(database, audit, 3)
    with database.session() as session:
        _as_attacker(session)
        session.execute(text("DELETE FROM audit_event WHERE seq = 3"))
        # The attacker's own script: a well-formed event hashed with a guessed key.
        forged = AuditEvent(
            seq=3, at=utcnow(), event="revoked", actor="U-evil", details={}, prev_hash="", hash=""
        )
        forged.prev_hash = session.get(AuditEvent, 2).hash  # type: ignore[union-attr]
        forged.hash = chain_hash(b"a-different-key-guessed-by-someone", forged.prev_hash, forged)
        session.add(forged)
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


def test_inserted_event_is_named(database: Database, audit: AuditLog) -> None:
    _write(database, audit, 3)
    with database.session() as session:
        _as_attacker(session)
        # Shift events 2..3 up and slip a forged event in at 2, copying a real hash.
        for seq in (3, 2):
            session.execute(
                text("UPDATE audit_event SET seq = :new WHERE seq = :old"),
                {"new": seq + 1, "old": seq},
            )
        session.execute(
            text(
                "INSERT INTO audit_event (seq, at, event, actor, details, prev_hash, hash) "
                "SELECT 2, at, 'approved', 'U-evil', details, hash, hash FROM audit_event WHERE seq = 1"
            )
        )
    with database.session() as session:
        result = audit.verify(session)
    assert not result.ok and result.bad_seq == 2


def test_a_hundred_concurrent_writers_leave_one_chain(database: Database, audit: AuditLog) -> None:
    from sqlalchemy import create_engine
    from sqlmodel import Session

    # 100 writer threads at once; on PostgreSQL over 40 connections (it allows 100 in all
    # here), on SQLite through our engine, whose BEGIN IMMEDIATE serialises them.
    engine = (
        create_engine(database.url, pool_size=40, max_overflow=0, pool_timeout=120)
        if database.is_postgres
        else database.engine
    )
    start = threading.Barrier(100)
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(5):
                with Session(engine) as session, session.begin():
                    audit.append(session, event="approval_recorded", actor=f"U{n:03d}{i}")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    with database.session() as session:
        result = audit.verify(session)
    assert result.ok and result.checked == 500, result.message


# On PostgreSQL only: SQLite serialises whole transactions (BEGIN IMMEDIATE) by design.
@pytest.mark.skipif(not POSTGRES_URL, reason="LATCHKEY_TEST_POSTGRES_URL is not set (CI sets it)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_open_transaction_holds_up_no_other_append(database: Database, audit: AuditLog) -> None:
    """An event is chained as its transaction commits: one transaction still busy after its
    event (a grant checking the trail, say) does not keep every other writer waiting."""
    appended, go_on = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def slow_writer() -> None:
        try:
            with database.session() as session:
                audit.append(session, event="granting", actor="latchkey")
                appended.set()
                assert go_on.wait(60), "the other writer never got through"
        except BaseException as exc:
            failures.append(exc)

    slow = threading.Thread(target=slow_writer)
    slow.start()
    assert appended.wait(30)
    # While the slow transaction is open, another appends and commits: event 1.
    _write(database, audit, 1)
    go_on.set()
    slow.join(60)
    assert not failures
    with database.session() as session:
        events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        assert audit.verify(session).ok
    assert [(e.seq, e.event) for e in events] == [(1, "requested"), (2, "granting")]
    assert events[0].at <= events[1].at  # stamped in chain order


def test_a_transaction_reads_its_own_events_and_a_rollback_leaves_no_gap(
    database: Database, audit: AuditLog
) -> None:
    from app.queries import events_of

    request_id = uuid.uuid4()
    with database.session() as session:
        audit.append(session, event="requested", actor="U1", request_id=request_id)
        audit.append(session, event="approved", actor="U2", request_id=request_id)
        # Reads see what the transaction wrote, whichever way they ask.
        assert [e.event for e in events_of(session, request_id, ("approved",))] == ["approved"]
        assert session.get(AuditEvent, 1) is not None
    with pytest.raises(RuntimeError), database.session() as session:
        audit.append(session, event="granting", actor="latchkey", request_id=request_id)
        raise RuntimeError("the provider call failed")
    _write(database, audit, 1)
    with database.session() as session:
        result = audit.verify(session)
        assert [e.event for e in events_of(session, request_id, ("granting",))] == []
    assert result.ok and result.checked == 3, result.message
