"""What the keyed audit chain proves (app/proof.py), table by table, on each backend.

Rows are forged the way an insider with DB access but without LATCHKEY_AUDIT_KEY would:
edited columns, or events written under another key.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update

from app import lifecycle, proof
from app.audit import AuditLog, chain_hash
from app.db import Database, utcnow
from app.flows.policy import RequestInput, allow
from app.models import AccessRequest, AuditEvent, Decision, Grant, RequestStatus
from app.queries import grant_of
from tests import factories
from tests.factories import APPROVER, REQUESTER, SECOND_APPROVER, make_flow

S = RequestStatus
FLOW = make_flow()


def _submit(db: Database, audit: AuditLog, seconds: int = 3600) -> uuid.UUID:
    ask = RequestInput(
        flow=FLOW.name, target="admins", duration=timedelta(seconds=seconds), reason="fix"
    )
    with db.session() as session:
        return lifecycle.submit(
            session=session, audit=audit, flow=FLOW, requester_id=REQUESTER, ask=ask
        ).id


def _approve(  # type: ignore[no-untyped-def]
    db: Database, audit: AuditLog, request_id: uuid.UUID, who: str, flow=FLOW, passkey=None
) -> lifecycle.DecisionOutcome:
    with db.session() as session:
        return lifecycle.decide(
            session=session,
            audit=audit,
            flow=flow,
            request_id=request_id,
            decider_id=who,
            verdict=allow("listed"),
            decision=Decision.APPROVE,
            passkey=passkey,
        )


def _problem(db: Database, audit: AuditLog, request_id: uuid.UUID, flow=FLOW) -> str | None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        request = session.get(AccessRequest, request_id)
        return proof.decision_problem(session=session, audit=audit, flow=flow, request=request)


def test_a_keyed_approval_is_proof(database: Database, audit: AuditLog) -> None:
    request_id = _submit(database, audit)
    _approve(database, audit, request_id, APPROVER)
    assert _problem(database, audit, request_id) is None


def test_a_row_set_to_approved_is_not(database: Database, audit: AuditLog) -> None:
    request_id = _submit(database, audit)
    with database.session() as session:
        session.execute(
            update(AccessRequest).where(AccessRequest.id == request_id).values(status=S.APPROVED)
        )
    assert "no keyed approval" in (_problem(database, audit, request_id) or "")


def test_an_approval_written_under_another_key_is_not(database: Database, audit: AuditLog) -> None:
    request_id = _submit(database, audit)
    # A well-formed event chained onto the head, but hashed with the forger's key.
    with database.session() as session:
        request = session.get(AccessRequest, request_id)
        head = session.execute(
            select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)
        ).scalar_one()
        event = AuditEvent(
            seq=head.seq + 1,
            at=utcnow(),
            event="approved",
            actor=APPROVER,
            request_id=request.id,
            flow=request.flow,
            target=request.target,
            subject=REQUESTER,
            details={"quorum": "1 of 1"},
            prev_hash=head.hash,
            hash="",
        )
        event.hash = chain_hash(b"not-the-audit-key-0123456789", head.hash, event)
        session.add(event)
    assert not audit.authentic(event)
    assert "no keyed approval" in (_problem(database, audit, request_id) or "")


def test_a_quorum_short_of_the_flow_is_not(database: Database, audit: AuditLog) -> None:
    two = make_flow(approvals_required=2)
    request_id = _submit(database, audit)
    _approve(database, audit, request_id, APPROVER, flow=make_flow())  # decided under 1
    assert "1 of 2" in (_problem(database, audit, request_id, flow=two) or "")
    request_id = _submit(database, audit)
    _approve(database, audit, request_id, APPROVER, flow=two)
    _approve(database, audit, request_id, SECOND_APPROVER, flow=two)
    assert _problem(database, audit, request_id, flow=two) is None


def test_the_filer_of_a_request_on_behalf_is_not_counted_whatever_the_row_said(
    database: Database, audit: AuditLog
) -> None:
    """An insider blanks requested_by, so lifecycle.decide takes the filer for an approver,
    then restores it: the keyed `requested` still names the filer, whose approval counts
    for nothing; another approver's does."""
    ask = RequestInput(flow=FLOW.name, target="admins", duration=timedelta(hours=1), reason="x")
    with database.session() as session:
        request_id = lifecycle.submit(
            session=session,
            audit=audit,
            flow=FLOW,
            requester_id=REQUESTER,
            ask=ask,
            requested_by=APPROVER,
        ).id

    def set_filer(filer: str | None) -> None:
        with database.session() as session:
            session.execute(
                update(AccessRequest)
                .where(AccessRequest.id == request_id)
                .values(requested_by=filer)
            )

    set_filer(None)
    _approve(database, audit, request_id, APPROVER)
    with database.session() as session:
        assert session.get(AccessRequest, request_id).status == S.APPROVED  # the row was fooled
    assert "no keyed record of this request" in (_problem(database, audit, request_id) or "")
    set_filer(APPROVER)
    assert "0 of 1" in (_problem(database, audit, request_id) or "")
    with database.session() as session:  # a second approver's keyed approval does count
        request = session.get(AccessRequest, request_id)
        audit.append(
            session,
            event="approval_recorded",
            actor=SECOND_APPROVER,
            request_id=request_id,
            flow=request.flow,
            target=request.target,
            subject=REQUESTER,
            details={},
        )
    assert _problem(database, audit, request_id) is None


def test_a_passkey_flow_counts_only_approvals_a_passkey_confirmed(
    database: Database, audit: AuditLog
) -> None:
    """A keyed approval from a Slack click (made before the flow asked for passkeys, or
    forced past the listener) is no approval of a passkey flow; one with a credential is."""
    passkey_flow = make_flow(approval_assurance="passkey")
    request_id = _submit(database, audit)
    _approve(database, audit, request_id, APPROVER)  # decided under the Slack-only flow
    assert "0 of 1" in (_problem(database, audit, request_id, flow=passkey_flow) or "")
    request_id = _submit(database, audit)
    refused = _approve(database, audit, request_id, APPROVER, flow=passkey_flow)
    assert refused.refusal == lifecycle.requests.PASSKEY_NEEDED
    _approve(database, audit, request_id, APPROVER, flow=passkey_flow, passkey="Y3JlZA")
    assert _problem(database, audit, request_id, flow=passkey_flow) is None


def test_a_duration_edited_in_the_row_is_not(database: Database, audit: AuditLog) -> None:
    request_id = _submit(database, audit, seconds=4)
    _approve(database, audit, request_id, APPROVER)
    with database.session() as session:
        session.execute(
            update(AccessRequest)
            .where(AccessRequest.id == request_id)
            .values(requested_seconds=86400)
        )
    assert "duration differs" in (_problem(database, audit, request_id) or "")


def test_break_glass_under_requester_assurance_needs_the_passkey(
    database: Database, audit: AuditLog
) -> None:
    flow = make_flow(break_glass=True, requester_assurance="passkey")
    for passkey, problem in ((None, "no passkey confirmed"), ("Y3JlZA", None)):
        request_id = _submit(database, audit)
        with database.session() as session:
            lifecycle.break_glass(
                session=session,
                audit=audit,
                request_id=request_id,
                actor=REQUESTER,
                passkey=passkey,
            )
        found = _problem(database, audit, request_id, flow=flow)
        assert (problem in (found or "")) if problem else found is None


def test_break_glass_needs_a_flow_that_allows_it(database: Database, audit: AuditLog) -> None:
    request_id = _submit(database, audit)
    with database.session() as session:
        lifecycle.break_glass(session=session, audit=audit, request_id=request_id, actor=REQUESTER)
    assert "break-glass" in (_problem(database, audit, request_id) or "")
    assert _problem(database, audit, request_id, flow=make_flow(break_glass=True)) is None


def _granted(database: Database, audit: AuditLog) -> tuple[uuid.UUID, Grant]:
    request_id = _submit(database, audit)
    _approve(database, audit, request_id, APPROVER)
    with database.session() as session:
        grant = factories.activate(
            session=session,
            audit=audit,
            request_id=request_id,
            provider="aws_iam_group",
            principal="sam@example.com",
            details={},
            resource="latchkey-test-admins",
        )
    return request_id, grant


def _unbound(database: Database, audit: AuditLog, request_id: uuid.UUID) -> str | None:
    with database.session() as session:
        request = session.get(AccessRequest, request_id)
        grant = grant_of(session, request_id)
        return proof.binding_problem(session=session, audit=audit, request=request, grant=grant)


def test_a_live_grant_is_bound_to_its_keyed_principal_resource_and_end(
    database: Database, audit: AuditLog
) -> None:
    request_id, _ = _granted(database, audit)
    assert _unbound(database, audit, request_id) is None
    for column, value, word in (
        ("expires_at", utcnow() + timedelta(days=30), "end"),
        ("principal", "ceo@example.com", "principal"),
        ("resource", "AdministratorAccess", "resource"),
    ):
        request_id, _ = _granted(database, audit)
        with database.session() as session:
            session.execute(
                update(Grant).where(Grant.request_id == request_id).values({column: value})
            )
        assert word in (_unbound(database, audit, request_id) or ""), column
