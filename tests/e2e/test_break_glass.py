"""Break-glass: immediate self-activation with a reason and a confirm step, loud, reviewed."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app.models import AuditEvent
from app.slack import ids
from app.testing.scenes import (
    BREAK_GLASS_TICKED,
    card_update,
    dm_to,
    group_members,
    new_person,
    open_request_modal,
)
from app.testing.slack_driver import plain_text_value, static_select_value
from app.testing.stack import LocalStack
from tests.factories import APPROVER, GROUP_NAME, OUTSIDER

CHECKED = BREAK_GLASS_TICKED


def _values(flow: str, reason: str) -> dict:
    return {
        ids.FLOW_BLOCK: {ids.FLOW_ACTION: static_select_value(flow)},
        ids.TARGET_BLOCK: {ids.TARGET_ACTION: static_select_value("admins")},
        ids.DURATION_BLOCK: {ids.DURATION_ACTION: static_select_value("3600")},
        ids.REASON_BLOCK: {ids.REASON_ACTION: plain_text_value(reason)},
        ids.BREAK_GLASS_BLOCK: {ids.BREAK_GLASS_ACTION: CHECKED},
    }


def test_break_glass_grants_at_once_alerts_the_channel_and_is_reviewed(stack: LocalStack) -> None:
    person = new_person(stack)
    view = open_request_modal(stack, person)
    response = stack.driver.view_submission(
        person.user_id, view, _values("emergency", "prod is on fire INC-9")
    )
    body = response.json()
    assert body["response_action"] == "push" and body["view"]["callback_id"] == ids.BREAK_GLASS_VIEW
    assert person.email not in group_members(stack, GROUP_NAME)  # nothing before the confirm step

    confirm = stack.driver.view_submission(person.user_id, body["view"], {})
    assert confirm.json() == {"response_action": "clear"}
    dm_to(stack, person, "You now have")
    assert person.email in group_members(stack, GROUP_NAME)
    card = stack.slack.wait_for(
        "chat.postMessage",
        lambda a: (
            "BREAK-GLASS" in a.get("text", "") and f"<@{person.user_id}>" in a.get("text", "")
        ),
    )
    assert card.args["text"].startswith("<!here>")
    request_id = uuid.UUID(
        next(
            e["value"] for b in card.args["blocks"] if b["type"] == "actions" for e in b["elements"]
        )
    )

    for who in (OUTSIDER, person.user_id):
        stack.driver.block_action(
            who,
            ids.REVIEW_FLAG_ACTION,
            str(request_id),
            channel_id=card.response["channel"],
            message_ts=card.response["ts"],
        )
        stack.slack.wait_for(
            "response_url",
            lambda a, who=who: (
                (a.get("user") == who and "review" in a.get("text", "").lower())
                or (a.get("user") == who and "not an approver" in a.get("text", ""))
            ),
        )
    stack.driver.block_action(
        APPROVER,
        ids.REVIEW_FLAG_ACTION,
        str(request_id),
        channel_id=card.response["channel"],
        message_ts=card.response["ts"],
    )
    flagged = card_update(stack, card, f"Flagged by <@{APPROVER}>")
    left = [
        e["action_id"]
        for b in flagged.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    assert left == [ids.REVOKE_ACTION], "reviewed once: only Revoke stays while access lasts"
    with stack.database().session() as session:
        events = list(
            session.execute(
                select(AuditEvent.event)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)
            ).scalars()
        )
    assert events[:2] == ["requested", "break_glass"]
    assert (
        "granted" in events
        and events.count("review_refused") == 2
        and events[-1] == "break_glass_flagged"
    )


def test_break_glass_needs_a_flow_that_allows_it_and_a_reason(stack: LocalStack) -> None:
    person = new_person(stack)
    view = open_request_modal(stack, person)
    refused = stack.driver.view_submission(
        person.user_id, view, _values("test-admin", "just because")
    ).json()
    assert refused == {
        "response_action": "errors",
        "errors": {ids.BREAK_GLASS_BLOCK: "This flow has no break-glass."},
    }
    empty = stack.driver.view_submission(person.user_id, view, _values("emergency", "  ")).json()
    assert empty["response_action"] == "errors" and ids.REASON_BLOCK in empty["errors"]
