"""Extensions in the state machine, on each backend: limits, the atomic move, races."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from app import lifecycle
from app.audit import AuditLog
from app.db import Database, utcnow
from app.extensions import apply_extension, request_extension
from app.flows.policy import RequestInput, allow
from app.flows.schema import Flow
from app.models import AccessRequest, AuditEvent, Decision, Grant, RequestStatus
from tests import factories
from tests.factories import APPROVER, REQUESTER, make_flow

S = RequestStatus
HOUR = timedelta(hours=1)


def _active(db: Database, audit: AuditLog, flow: Flow, seconds: int = 3600) -> AccessRequest:
    ask = RequestInput(
        flow=flow.name, target="admins", duration=timedelta(seconds=seconds), reason="fix prod"
    )
    with db.session() as session:
        request = lifecycle.submit(
            session=session, audit=audit, flow=flow, requester_id=REQUESTER, ask=ask
        )
        lifecycle.auto_decide(
            session=session, audit=audit, request_id=request.id, approve=True, reason="test"
        )
        factories.activate(
            session=session,
            audit=audit,
            request_id=request.id,
            provider="aws_iam_group",
            principal="sam@example.com",
            details={},
        )
    return request


def _ask(
    db: Database, audit: AuditLog, flow: Flow, parent: AccessRequest, extra=HOUR, who=REQUESTER
):
    with db.session() as session:
        return request_extension(
            session=session,
            audit=audit,
            flow=flow,
            parent_id=parent.id,
            requester_id=who,
            extra=extra,
            reason="still migrating",
            now=utcnow(),
        )


def _approve_and_apply(db: Database, audit: AuditLog, flow: Flow, extension: AccessRequest):
    with db.session() as session:
        lifecycle.decide(
            session=session,
            audit=audit,
            flow=flow,
            request_id=extension.id,
            decider_id=APPROVER,
            verdict=allow("ok"),
            decision=Decision.APPROVE,
        )
    with db.session() as session:
        return apply_extension(
            session=session, audit=audit, flow=flow, extension_id=extension.id, now=utcnow()
        )


def _end(db: Database, request: AccessRequest):
    with db.session() as session:
        return session.execute(
            select(Grant.expires_at).where(Grant.request_id == request.id)
        ).scalar_one()


def test_approved_extension_moves_the_end_once_and_is_audited(
    database: Database, audit: AuditLog
) -> None:
    flow = make_flow(max_duration=timedelta(hours=2))
    parent = _active(database, audit, flow)
    before = _end(database, parent)
    extension = _ask(database, audit, flow, parent)
    assert isinstance(extension, AccessRequest) and extension.extends_id == parent.id
    applied = _approve_and_apply(database, audit, flow, extension)
    assert applied.problem is None and applied.extension.status == S.EXTENDED
    assert _end(database, parent) == before + HOUR
    with database.session() as session:
        again = apply_extension(
            session=session, audit=audit, flow=flow, extension_id=extension.id, now=utcnow()
        )
        events = (
            session.execute(select(AuditEvent.event).where(AuditEvent.request_id == parent.id))
            .scalars()
            .all()
        )
    assert again.grant is None and _end(database, parent) == before + HOUR  # applied once
    assert list(events).count("extended") == 1
    # A timed revoke at the old end is not due any more.
    with database.session() as session:
        not_due = lifecycle.begin_revoke(
            session=session,
            audit=audit,
            request_id=parent.id,
            cause=lifecycle.EndCause.EXPIRED,
            actor="latchkey",
            now=before + timedelta(seconds=1),
        )
    assert not_due is None


def test_extension_limits_are_named(database: Database, audit: AuditLog) -> None:
    flow = make_flow(max_duration=HOUR, max_extensions=1, max_total_duration=timedelta(hours=2))
    parent = _active(database, audit, flow)
    assert "Only the person who holds" in _ask(database, audit, flow, parent, who=APPROVER)
    assert "at most 1h" in _ask(database, audit, flow, parent, extra=timedelta(hours=2))
    first = _ask(database, audit, flow, parent, extra=timedelta(minutes=30))
    assert isinstance(first, AccessRequest)
    assert "already waiting" in _ask(database, audit, flow, parent)
    _approve_and_apply(database, audit, flow, first)
    assert "already extended 1 time" in _ask(database, audit, flow, parent)

    capped = make_flow(max_duration=HOUR, max_total_duration=timedelta(minutes=90))
    other = _active(database, audit, capped)
    refusal = _ask(database, audit, capped, other, extra=HOUR)
    assert "allows at most 1h 30m per grant, so at most 30m more" in refusal

    none = make_flow(max_extensions=0)
    assert "does not allow extensions" in _ask(
        database, audit, none, _active(database, audit, none)
    )


def test_extension_of_an_ended_grant_fails_with_a_clear_word(
    database: Database, audit: AuditLog
) -> None:
    flow = make_flow()
    parent = _active(database, audit, flow)
    extension = _ask(database, audit, flow, parent, extra=timedelta(minutes=10))
    assert isinstance(extension, AccessRequest)
    with database.session() as session:
        lifecycle.begin_revoke(
            session=session,
            audit=audit,
            request_id=parent.id,
            cause=lifecycle.EndCause.RELEASED,
            actor=REQUESTER,
        )
    applied = _approve_and_apply(database, audit, flow, extension)
    assert applied.extension.status == S.FAILED
    assert "already ended" in applied.problem
    assert "already ended" in _ask(database, audit, flow, parent)


def test_concurrent_applies_of_one_extension_move_the_end_once(
    database: Database, audit: AuditLog
) -> None:
    flow = make_flow(max_duration=timedelta(hours=2))
    parent = _active(database, audit, flow)
    before = _end(database, parent)
    extension = _ask(database, audit, flow, parent)
    with database.session() as session:
        lifecycle.decide(
            session=session,
            audit=audit,
            flow=flow,
            request_id=extension.id,
            decider_id=APPROVER,
            verdict=allow("ok"),
            decision=Decision.APPROVE,
        )
    results = []
    barrier = threading.Barrier(5)

    def apply() -> None:
        barrier.wait()
        with database.session() as session:
            results.append(
                apply_extension(
                    session=session, audit=audit, flow=flow, extension_id=extension.id, now=utcnow()
                ).grant
            )

    threads = [threading.Thread(target=apply) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(g is not None for g in results) == 1
    assert _end(database, parent) == before + HOUR
    with database.session() as session:
        assert audit.verify(session).ok
