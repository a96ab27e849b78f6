"""Audit events forged in the database: an insider appends rows to the chain, hashed without
the audit key. The chain no longer verifies, so these stories run on a stack of their own
(`module_stack`): tests on the shared stack check that its whole chain is intact."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from app.audit import chain_hash
from app.db import utcnow
from app.models import AccessRequest, Approval, AuditEvent, Grant, RequestStatus
from app.slack import ids
from app.testing.scenes import (
    click,
    dm_to,
    group_members,
    new_person,
    request_id_on,
    said_to,
    submit_request,
)
from app.testing.stack import LocalStack
from tests.e2e.test_idp_groups import _approved, _idp
from tests.e2e.test_routing import _posted_to
from tests.factories import CHANNEL, GROUP_NAME


@pytest.fixture
def stack(module_stack: LocalStack) -> LocalStack:
    return module_stack


def _forge(
    stack: LocalStack,
    request_id: uuid.UUID,
    event: str,
    *,
    flow: str,
    target: str,
    subject: str,
    details: dict[str, Any],
) -> None:
    """Append an event as an insider would: chained onto the head, hashed with a key that is
    not the audit key."""
    with stack.database().session() as session:
        head = session.execute(
            select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)  # type: ignore[attr-defined]
        ).scalar_one()
        forged = AuditEvent(
            seq=head.seq + 1,
            at=utcnow(),
            event=event,
            actor="latchkey",
            request_id=request_id,
            flow=flow,
            target=target,
            subject=subject,
            details=details,
            prev_hash=head.hash,
            hash="",
        )
        forged.hash = chain_hash(b"an-insider-key-not-the-audit-key", head.hash, forged)
        session.add(forged)


def test_an_escalation_forged_in_the_db_makes_nobody_an_approver(stack: LocalStack) -> None:
    """An insider writes an `escalated` event naming themselves (may_approve), chained onto
    the head but hashed without the audit key: their click is refused and the request
    still waits, while the flow's real steps (keyed) go on."""
    person, insider = new_person(stack), new_person(stack)
    mark = stack.slack.mark()
    submit_request(stack, person, flow="escalating", target="admins", seconds=3600, reason="db")
    card = _posted_to(stack, CHANNEL, person, since=mark)
    request_id = uuid.UUID(request_id_on(card))
    _forge(
        stack,
        request_id,
        "escalated",
        flow="escalating",
        target="admins",
        subject=person.user_id,
        details={
            "step": 1,
            "after_seconds": 60,
            "users": [insider.user_id],
            "may_approve": True,
        },
    )
    assert click(stack, insider.user_id, ids.APPROVE_ACTION, card).status == 200
    said_to(stack, insider.user_id, "not an approver", since=mark)
    with stack.database().session() as session:
        request = session.get(AccessRequest, request_id)
        assert request is not None and request.status == RequestStatus.PENDING
        assert not session.execute(
            select(Approval).where(Approval.request_id == request_id)  # type: ignore[arg-type]
        ).all()
    assert person.email not in group_members(stack, GROUP_NAME)


def test_already_member_forged_in_the_db_keeps_no_membership(stack: LocalStack) -> None:
    """An insider writes a `granted` event saying the person was a member before (hashed
    without the audit key), and edits the grant row to say so too: the membership Latchkey
    made still goes at the end."""
    idp = _idp(stack)
    person = new_person(stack, iam_user=False)
    user_id = idp.okta.add_user(person.email)
    request_id = _approved(stack, person, "okta-group", "prod-admins", seconds=8)
    _forge(
        stack,
        request_id,
        "granted",
        flow="okta-group",
        target="prod-admins",
        subject=person.user_id,
        details={"already_member": True},
    )
    with stack.database().session() as session:
        session.execute(
            update(Grant)
            .where(Grant.request_id == request_id)  # type: ignore[arg-type]
            .values(details={"already_member": True})
        )
    dm_to(stack, person, "expired", timeout=30)
    assert user_id not in idp.okta.members(idp.okta_group)
