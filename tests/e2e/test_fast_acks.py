"""Approve acks at once and the worker decides: a click is kept, keyed, whatever the worker
is doing, and the approver hears how it ends (issue 14, point 1)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app.models import AccessRequest, AuditEvent, RequestStatus
from app.slack import ids
from app.testing.scenes import (
    Person,
    approval_card_for,
    click,
    group_members,
    new_person,
    request_id_on,
    said_to,
    submit_request,
)
from app.testing.slack_standin import RecordedCall
from app.testing.stack import LocalStack, wait_until
from tests.factories import APPROVER, GROUP_NAME, OUTSIDER


def _pending(stack: LocalStack) -> tuple[Person, RecordedCall, uuid.UUID]:
    person = new_person(stack)
    submit_request(
        stack, person, flow="test-admin", target="admins", seconds=3600, reason="on-call fix"
    )
    card = approval_card_for(stack, person)
    return person, card, uuid.UUID(request_id_on(card))


def _trail(stack: LocalStack, request_id: uuid.UUID) -> list[AuditEvent]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            ).scalars()
        )


def _status(stack: LocalStack, request_id: uuid.UUID) -> RequestStatus:
    with stack.database().session() as session:
        request = session.get(AccessRequest, request_id)
        assert request is not None
        return request.status


def test_a_click_while_the_worker_is_stopped_is_acked_kept_and_decided_when_it_is_back(
    stack: LocalStack,
) -> None:
    person, card, request_id = _pending(stack)
    stack.stop_process("worker")
    try:
        assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
        # Nobody decided yet, so the approver is told it is being decided, in words.
        said_to(stack, APPROVER, "Your approval is recorded; deciding")
        kept = [e for e in _trail(stack, request_id) if e.event == "decision_deferred"]
        assert [(e.actor, e.details["decision"]) for e in kept] == [(APPROVER, "approve")]
        assert _status(stack, request_id) == RequestStatus.PENDING
        assert person.email not in group_members(stack, GROUP_NAME)
    finally:
        stack.start_process("worker")
    wait_until(lambda: person.email in group_members(stack, GROUP_NAME), 60, "the grant")
    said_to(stack, APPROVER, "is decided: the request is", timeout=30)
    trail = [(e.event, e.actor) for e in _trail(stack, request_id)]
    assert ("approved", APPROVER) in trail and ("decision_resumed", "latchkey") in trail


def test_a_non_approver_is_refused_in_words_and_on_the_record(stack: LocalStack) -> None:
    person, card, request_id = _pending(stack)
    assert click(stack, OUTSIDER, ids.APPROVE_ACTION, card).status == 200
    told = said_to(stack, OUTSIDER, "not an approver", timeout=30)
    assert told.args["text"].startswith(":no_entry:")
    wait_until(
        lambda: any(e.event == "approve_refused" for e in _trail(stack, request_id)),
        10,
        "the refusal on the record",
    )
    resumed = [e for e in _trail(stack, request_id) if e.event == "decision_resumed"]
    assert resumed and "not an approver" in resumed[0].details["refusal"]
    assert _status(stack, request_id) == RequestStatus.PENDING
    assert person.email not in group_members(stack, GROUP_NAME)
