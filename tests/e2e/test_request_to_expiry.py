"""The spine, end to end: /access → modal → card → Approve → IAM group → expiry → out."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from app.audit import AuditLog
from app.models import AuditEvent
from app.slack import ids
from app.testing.scenes import (
    approval_card_for,
    card_update,
    click,
    dm_to,
    group_members,
    new_person,
    open_request_modal,
    request_id_on,
    submit_request,
)
from app.testing.stack import AUDIT_KEY, LocalStack
from tests.factories import APPROVED_BY_CLICK, APPROVER, CHANNEL, GROUP_NAME

HOSTILE = "<!channel> <@U123> <https://x|y>"


def test_request_approve_grant_expire(stack: LocalStack) -> None:
    person = new_person(stack, tz="America/New_York")
    view = open_request_modal(stack, person)
    assert view["callback_id"] == ids.REQUEST_VIEW

    response = submit_request(
        stack, person, flow="test-admin", target="admins", seconds=4, reason=f"fix prod {HOSTILE}"
    )
    assert response.status == 200 and not response.body  # modal closes: a plain ack

    card = approval_card_for(stack, person)
    assert card.args["channel"] == CHANNEL
    dm_to(stack, person, "was sent for approval")
    request_id = uuid.UUID(request_id_on(card))

    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    granted = dm_to(stack, person, "You now have")
    assert "America/New_York" in granted.args["text"]
    assert group_members(stack, GROUP_NAME).count(person.email) == 1
    card_update(stack, card, f"Approved by <@{APPROVER}>")
    updated = card_update(stack, card, "Access granted")
    buttons = [
        e["action_id"]
        for b in updated.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert buttons == [ids.REVOKE_ACTION], "Approve/Deny must be gone; Revoke stays while active"

    dm_to(stack, person, "expired", timeout=20)
    assert person.email not in group_members(stack, GROUP_NAME)
    card_update(stack, card, "Access expired")

    with stack.database().session() as session:
        events = (
            session.execute(
                select(AuditEvent.event)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)
            )
            .scalars()
            .all()
        )
        # A 4-second grant is warned 0.4 s ahead; whether a sweep tick lands in that window
        # is timing, so the notice may or may not be in the trail.
        trail = [e for e in events if e != "expiry_notice_sent"]
        assert trail == [*APPROVED_BY_CLICK, "granting", "granted", "revoking", "expired"]
        assert AuditLog(AUDIT_KEY.encode()).verify(session).ok

    # User text arrives escaped in every message that carried it.
    for call in stack.slack.calls():
        text = json.dumps(call.args)
        if "fix prod" in text:
            assert (
                "<!channel>" not in text and "<@U123>" not in text and "<https://x|y>" not in text
            )
            assert "&lt;!channel&gt;" in text


def test_invalid_input_comes_back_as_field_errors(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    response = submit_request(
        stack, person, flow="test-admin", target="nope", seconds=5, reason="  "
    )
    assert response.status == 200
    body = response.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {ids.TARGET_BLOCK, ids.DURATION_BLOCK, ids.REASON_BLOCK}
    assert "durations this flow allows: 4s, 6s, 1h" in body["errors"][ids.DURATION_BLOCK]


def test_unknown_iam_user_fails_with_a_clear_word(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    submit_request(
        stack, person, flow="test-admin", target="admins", seconds=4, reason="no iam user"
    )
    card = approval_card_for(stack, person)
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    failed = dm_to(stack, person, "failed")
    assert "does not exist" in failed.args["text"] and "Nothing was granted" in failed.args["text"]
    card_update(stack, card, "Granting failed")
