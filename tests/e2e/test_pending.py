"""Pending requests: reminded once, timed out on the flow's clock, cancelled by the requester."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app.models import AccessRequest, AuditEvent, RequestStatus
from app.slack import ids
from app.testing.scenes import (
    approval_card_for,
    card_update,
    click,
    dm_to,
    new_person,
    request_id_on,
    submit_request,
)
from app.testing.stack import LocalStack
from tests.factories import APPROVER, APPROVER_GROUP, OUTSIDER


def _events(stack: LocalStack, request_id: uuid.UUID) -> list[str]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent.event)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)
            ).scalars()
        )


def test_pending_request_is_reminded_once_then_times_out(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    submit_request(
        stack, person, flow="short-fuse", target="admins", seconds=4, reason="nobody answers"
    )
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    reminder = stack.slack.wait_for(
        "chat.postMessage", lambda a: a.get("thread_ts") == card.response["ts"]
    )
    assert (
        f"<@{APPROVER}>" in reminder.args["text"]
        and f"<!subteam^{APPROVER_GROUP}>" in reminder.args["text"]
    )
    dm_to(stack, person, "timed out without a decision", timeout=20)
    card_update(stack, card, "Timed out")
    assert _events(stack, request_id) == ["requested", "approvers_reminded", "timed_out"]
    assert (
        len(
            [
                c
                for c in stack.slack.calls("chat.postMessage")
                if c.args.get("thread_ts") == card.response["ts"]
            ]
        )
        == 1
    )
    mark = stack.slack.mark()
    click(stack, APPROVER, ids.APPROVE_ACTION, card)  # too late
    stack.slack.wait_for(
        "response_url", lambda a: "already timed_out" in a.get("text", ""), since=mark
    )


def test_requester_cancels_their_pending_request(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    submit_request(
        stack, person, flow="test-admin", target="admins", seconds=4, reason="changed my mind"
    )
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    submitted = dm_to(stack, person, "was sent for approval")
    cancel = next(
        e for b in submitted.args["blocks"] if b["type"] == "actions" for e in b["elements"]
    )
    assert cancel["action_id"] == ids.CANCEL_ACTION
    # Someone else pressing the requester's button changes nothing.
    mark = stack.slack.mark()
    stack.driver.block_action(OUTSIDER, ids.CANCEL_ACTION, cancel["value"])
    stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel") == OUTSIDER and "Only the requester" in a.get("text", ""),
        since=mark,
    )
    stack.driver.block_action(person.user_id, ids.CANCEL_ACTION, cancel["value"])
    card_update(stack, card, "Cancelled by the requester")
    with stack.database().session() as session:
        assert session.get(AccessRequest, request_id).status == RequestStatus.CANCELLED
    assert _events(stack, request_id) == ["requested", "cancel_refused", "cancelled"]
