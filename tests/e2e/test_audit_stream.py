"""The SIEM webhook with the real processes: it fails at first, grants go on regardless,
and once it recovers it has every event, in chain order, each signature verified."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from app.models import AuditEvent
from app.slack import ids
from app.testing.receiver import AuditReceiver
from app.testing.scenes import (
    approval_card_for,
    click,
    dm_to,
    group_members,
    new_person,
    submit_request,
)
from app.testing.stack import LocalStack, wait_until
from tests.factories import APPROVER, GROUP_NAME


def test_webhook_gets_every_event_once_it_recovers_and_never_delays_a_grant(
    stack: LocalStack,
) -> None:
    receiver: AuditReceiver = stack.audit_receiver  # type: ignore[attr-defined]
    # Caught up first: the stack's SIEM fails its first deliveries too, and failures in a
    # row back off further each time (this test may be the first on a fresh stack).
    wait_until(lambda: max(receiver.seqs(), default=0) >= _last_seq(stack), 40, "a quiet SIEM")
    receiver.attempts, receiver.fail_first = 0, 3  # fail the next three deliveries
    person = new_person(stack)
    submit_request(stack, person, flow="test-admin", target="admins", seconds=3600, reason="siem")
    card = approval_card_for(stack, person)
    clicked = time.monotonic()
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    wait_until(lambda: person.email in group_members(stack, GROUP_NAME), 10, "the grant")
    granted_after = time.monotonic() - clicked
    dm_to(stack, person, "You now have")

    last = _last_seq(stack)
    wait_until(lambda: max(receiver.seqs(), default=0) >= last, 40, "the SIEM to catch up")
    seqs = receiver.seqs()
    assert sorted(set(seqs)) == list(range(1, max(seqs) + 1)), "no event missing"
    assert seqs == sorted(seqs), "delivered in chain order"
    assert receiver.bad_signatures == 0 and receiver.attempts > 3
    granted = [e for e in receiver.events if e["event"] == "granted"]
    assert granted and granted[-1]["subject"] == person.user_id
    assert granted_after < 10, "a failing SIEM never holds up a grant"


def _last_seq(stack: LocalStack) -> int:
    with stack.database().session() as session:
        return session.execute(select(func.max(AuditEvent.seq))).scalar_one() or 0
