"""An insider edits the database: a row alone grants nothing (DESIGN.md, invariant 4).

Rows are written straight into the DB, as someone with DB access but without the audit key
would; the real worker, beat and reconciliation run against them.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update

from app.db import utcnow
from app.models import AccessRequest, AuditEvent, Grant, RequestStatus
from app.testing.scenes import group_members, new_person
from app.testing.stack import LocalStack, wait_until
from tests.factories import CHANNEL, GROUP_NAME

S = RequestStatus


def _events(stack: LocalStack, request_id: uuid.UUID) -> list[str]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent.event)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)
            ).scalars()
        )


def _channel_alert(stack: LocalStack, request_id: uuid.UUID) -> bool:
    return any(
        call.args.get("channel") == CHANNEL
        and str(request_id)[:8] in call.args.get("text", "")
        and "does not match the keyed audit trail" in call.args.get("text", "")
        for call in stack.slack.calls("chat.postMessage")
    )


def test_a_row_forged_to_approved_is_never_granted(stack: LocalStack) -> None:
    person = new_person(stack)
    forged = AccessRequest(
        flow="test-admin",
        target="admins",
        requester_id=person.user_id,
        reason="trust me",
        requested_seconds=3600,
        status=S.APPROVED,
        created_at=utcnow() - timedelta(minutes=5),
        updated_at=utcnow() - timedelta(minutes=5),
    )
    with stack.database().session() as session:
        session.add(forged)
    # The sweep finds an approved request without a grant and hands it to the worker.
    wait_until(lambda: "grant_refused" in _events(stack, forged.id), 30, "the refusal")
    wait_until(lambda: _channel_alert(stack, forged.id), 15, "the channel to be alerted")

    def failure() -> str | None:
        with stack.database().session() as session:
            request = session.get(AccessRequest, forged.id)
            return (request.failure or "-") if request and request.status == S.FAILED else None

    # The worker marks it failed just after the alert (app.granting._refuse_unproven).
    assert "no keyed record of this request" in wait_until(failure, 15, "the failed request")
    assert person.email not in group_members(stack, GROUP_NAME)


def test_a_forged_active_grant_is_not_reapplied(stack: LocalStack) -> None:
    """An active row with a grant row, written without the key: reconciliation finds the
    access missing at AWS and must refuse to re-apply it."""
    person = new_person(stack)
    request_id = uuid.uuid4()
    with stack.database().session() as session:
        session.add(
            AccessRequest(
                id=request_id,
                flow="test-admin",
                target="admins",
                requester_id=person.user_id,
                reason="trust me",
                requested_seconds=3600,
                status=S.ACTIVE,
            )
        )
        session.flush()
        session.add(
            Grant(
                request_id=request_id,
                provider="aws_iam_group",
                target="admins",
                resource=GROUP_NAME,
                principal=person.email,
                expires_at=utcnow() + timedelta(hours=1),
            )
        )
    stack.reconcile_until(
        lambda: "reapply_refused" in _events(stack, request_id), 30, "the refusal"
    )
    wait_until(lambda: _channel_alert(stack, request_id), 15, "the channel to be alerted")
    assert person.email not in group_members(stack, GROUP_NAME)


def test_an_end_moved_in_the_db_is_not_honoured_at_the_provider(stack: LocalStack) -> None:
    """A real grant whose end an insider pushes out in the DB: re-application refuses the
    unbound end, and the grant still ends by the sweep (a longer row ends nothing later at a
    native-expiry provider either: the end it holds is the chain's)."""
    from app.slack import ids
    from app.testing.scenes import approval_card_for, click, dm_to, request_id_on, submit_request
    from tests.factories import APPROVER

    person = new_person(stack)
    submit_request(stack, person, flow="test-admin", target="admins", seconds=6, reason="moved")
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    dm_to(stack, person, "You now have")
    with stack.database().session() as session:
        session.execute(
            update(Grant)
            .where(Grant.request_id == request_id)
            .values(expires_at=utcnow() + timedelta(days=30))
        )
    # Take the access away at AWS: reconciliation sees it missing, and must not put it back.
    stack.iam().remove_user_from_group(GroupName=GROUP_NAME, UserName=person.email)
    stack.reconcile_until(
        lambda: "reapply_refused" in _events(stack, request_id), 30, "the refusal"
    )
    assert person.email not in group_members(stack, GROUP_NAME)


def test_a_forged_extension_row_moves_no_end(stack: LocalStack) -> None:
    """A real, approved one-hour grant; an insider inserts an approved extension of it,
    without the key: the worker refuses to apply it, audits and alerts, and the grant keeps
    the end its approval gave it."""
    from app.slack import ids
    from app.testing.scenes import approval_card_for, click, dm_to, request_id_on, submit_request
    from tests.factories import APPROVER

    person = new_person(stack)
    submit_request(stack, person, flow="test-admin", target="admins", seconds=3600, reason="real")
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    dm_to(stack, person, "You now have")
    with stack.database().session() as session:
        grant = session.execute(select(Grant).where(Grant.request_id == request_id)).scalar_one()
        end = grant.expires_at
    forged = AccessRequest(
        flow="test-admin",
        target="admins",
        requester_id=person.user_id,
        reason="more please",
        requested_seconds=3600,
        approved_seconds=3600,
        extends_id=request_id,
        status=S.APPROVED,
        created_at=utcnow() - timedelta(minutes=1),
        updated_at=utcnow() - timedelta(minutes=1),
    )
    with stack.database().session() as session:
        session.add(forged)
    # The sweep finds an approved request nobody is applying and hands it to the worker.
    wait_until(lambda: "extension_refused" in _events(stack, forged.id), 30, "the refusal")
    wait_until(lambda: _channel_alert(stack, forged.id), 15, "the channel to be alerted")
    with stack.database().session() as session:
        assert session.get(AccessRequest, forged.id).status == S.FAILED
        grant = session.execute(select(Grant).where(Grant.request_id == request_id)).scalar_one()
        assert grant.expires_at == end
    assert "extended" not in _events(stack, request_id)
    assert person.email in group_members(stack, GROUP_NAME)
