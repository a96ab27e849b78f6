"""Every refusal and every error reaches the person who clicked, in the channel or not,
and every refused action is audited (issue 12, point 2).

Slack refuses chat.postEphemeral for anyone outside the channel (user_not_in_channel), so
the approval channel here has only the approver in it: an outsider or a requester clicking
its card is told through the click's response_url, and a modal submission by DM.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from slack_sdk.webhook import WebhookClient
from sqlalchemy import select

from app.models import AccessRequest, AuditEvent, RequestStatus
from app.slack import ids
from app.testing.scenes import (
    Person,
    approval_card_for,
    click,
    click_in_dm,
    connect,
    dm_to,
    new_person,
    request_id_on,
    submit_request,
)
from app.testing.slack_standin import RecordedCall
from app.testing.stack import LocalStack, wait_until
from tests.factories import APPROVER, CHANNEL, OUTSIDER

S = RequestStatus
STRANGER = Person(OUTSIDER, "dee@example.com")


def _in_channel(stack: LocalStack) -> None:
    """The approval channel as Slack has it: the approver is in it, nobody else."""
    if CHANNEL not in stack.slack._channels:
        stack.slack.add_channel(CHANNEL, name="access-approvals", members=[APPROVER])


def _shown(
    stack: LocalStack, user_id: str, contains: str, timeout: float = 15, *, after: int = 0
) -> RecordedCall:
    """What this person was shown through a response_url (ephemeral, original kept), among
    what they were shown after their first `after` responses (the shared stack keeps
    what earlier tests showed the same fixed people)."""

    def found() -> RecordedCall | None:
        return next(
            (
                c
                for c in stack.slack.responses(user_id)[after:]
                if c.ok and contains in c.args["text"]
            ),
            None,
        )

    shown = wait_until(found, timeout, f"{contains!r} shown to {user_id} via response_url")
    assert shown.args["response_type"] == "ephemeral"
    assert shown.args["replace_original"] is False
    return shown


def _events(stack: LocalStack, request_id: uuid.UUID | str) -> list[tuple[str, str, Any]]:
    with stack.database().session() as session:
        rows = session.execute(
            select(AuditEvent.event, AuditEvent.actor, AuditEvent.details)
            .where(AuditEvent.request_id == uuid.UUID(str(request_id)))
            .order_by(AuditEvent.seq)
        ).all()
    return [(e, a, d) for e, a, d in rows]


def _status(stack: LocalStack, request_id: str) -> RequestStatus:
    with stack.database().session() as session:
        request = session.get(AccessRequest, uuid.UUID(request_id))
        assert request is not None
        return request.status


def _dms_now(stack: LocalStack, person: Person) -> list[str]:
    """Each DM the bot sent this person, as it reads now (after any chat.update)."""
    posted = [
        c.response
        for c in stack.slack.calls("chat.postMessage")
        if c.ok and c.args.get("channel") == person.user_id
    ]
    return [stack.slack.message(p["channel"], p["ts"])["text"] for p in posted]


def _once(stack: LocalStack, person: Person, words: str) -> None:
    """Exactly one of the person's DMs says this: the older one never repeats it."""
    dm_to(stack, person, words)
    assert [t for t in _dms_now(stack, person) if words in t] == [
        next(t for t in _dms_now(stack, person) if words in t)
    ], _dms_now(stack, person)


def _pending(stack: LocalStack) -> tuple[Person, RecordedCall, str]:
    _in_channel(stack)
    person = new_person(stack)
    response = submit_request(
        stack, person, flow="test-admin", target="admins", seconds=3600, reason="on-call fix"
    )
    assert response.status == 200 and not response.body, response.body
    card = approval_card_for(stack, person)
    return person, card, request_id_on(card)


def test_people_outside_the_channel_are_told_why_and_it_is_audited(stack: LocalStack) -> None:
    mark = stack.log_mark()
    person, card, request_id = _pending(stack)
    assert card.response["channel"] == CHANNEL
    for who, words in ((OUTSIDER, "not an approver"), (person.user_id, "your own request")):
        assert who not in stack.slack.members(CHANNEL)
        seen = len(stack.slack.responses(who))
        assert click(stack, who, ids.APPROVE_ACTION, card).status == 200
        shown = _shown(stack, who, words, after=seen)
        assert shown.args["channel"] == CHANNEL and shown.args["text"].startswith(":no_entry:")
    # Nobody was sent an ephemeral Slack would refuse; nothing was logged as an error.
    assert stack.slack.calls("chat.postEphemeral") == []
    # The web kept the clicks; the worker checked, refused and logged them.
    logs = stack.log("web", mark) + stack.log("worker", mark)
    assert "refused: " in logs and OUTSIDER in logs and person.user_id in logs
    assert "unhandled error" not in logs
    kept = ("decision_deferred", "decision_resumed")
    assert [(e, a) for e, a, _ in _events(stack, request_id) if e not in kept] == [
        ("requested", person.user_id),
        ("approve_refused", OUTSIDER),
        ("approve_refused", person.user_id),
    ]
    assert _status(stack, request_id) == S.PENDING


def test_refused_actions_on_a_grant_are_audited_and_told(stack: LocalStack) -> None:
    person, card, request_id = _pending(stack)
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    wait_until(lambda: _status(stack, request_id) == S.ACTIVE, 15, "the grant")
    _once(stack, person, "You now have")

    before = len(stack.slack.responses(OUTSIDER))
    for action in (ids.RELEASE_ACTION, ids.EXTEND_ACTION, ids.REQUEST_AGAIN_ACTION):
        assert click_in_dm(stack, STRANGER, action, request_id).status == 200
    wait_until(
        lambda: len(stack.slack.responses(OUTSIDER)) >= before + 3, 15, "3 replies to the outsider"
    )
    told = [c.args["text"] for c in stack.slack.responses(OUTSIDER)[before:]]
    assert told == [":no_entry: Only the person who holds this access can do that."] * 3

    # Listeners run concurrently after their ack: the three land in any order.
    refused = {(e, a, d["reason"]) for e, a, d in _events(stack, request_id) if "refused" in e}
    assert refused == {
        ("release_refused", OUTSIDER, "not the holder"),
        ("extend_refused", OUTSIDER, "not the holder"),
        ("request_again_refused", OUTSIDER, "not the holder"),
    }
    assert _status(stack, request_id) == S.ACTIVE

    # The holder gives it back; a second "I'm done" is refused, told, and audited too.
    click_in_dm(stack, person, ids.RELEASE_ACTION, request_id)
    wait_until(lambda: _status(stack, request_id) == S.REVOKED, 15, "the release")
    _once(stack, person, "was released by you")
    assert "was granted at" in _dms_now(stack, person)[-2]
    click_in_dm(stack, person, ids.RELEASE_ACTION, request_id)
    _shown(stack, person.user_id, "This access is not active")
    wait_until(
        lambda: [e for e, a, _ in _events(stack, request_id) if e == "release_refused"][1:],
        10,
        "the second release_refused",
    )


def test_a_modal_submission_is_answered_by_dm(stack: LocalStack) -> None:
    person = new_person(stack)
    view = {"callback_id": ids.EXTEND_VIEW, "private_metadata": json.dumps({"request_id": "x"})}
    response = stack.driver.view_submission(person.user_id, view, {})
    assert response.status == 200
    dm_to(stack, person, ":no_entry: That button does not point at a request.")

    # An error (not a refusal) is told too, with a reference the admins find in the log.
    broken = {"callback_id": ids.EXTEND_VIEW, "private_metadata": "{not json"}
    assert stack.driver.view_submission(person.user_id, broken, {}).status == 200
    said = dm_to(stack, person, "Something went wrong on our side")
    reference = said.args["text"].split("(ref ")[1][:8]
    wait_until(lambda: f"unhandled error (ref {reference}" in stack.log("web"), 10, "the log")


def test_a_spent_response_url_falls_back_to_a_dm(stack: LocalStack) -> None:
    _, card, request_id = _pending(stack)
    spent = stack.slack.response_url(OUTSIDER, CHANNEL)
    for n in range(5):
        assert WebhookClient(spent).send(text=f"use {n}").status_code == 200
    connect(stack).driver.response_urls = lambda user, channel: spent
    try:
        click(stack, OUTSIDER, ids.APPROVE_ACTION, card)
        dm = dm_to(stack, STRANGER, "not an approver")
    finally:
        stack.driver.response_urls = stack.slack.response_url
    assert dm.args["channel"] == OUTSIDER
    assert stack.slack.responses(OUTSIDER)[-1].response["error"] == "used_url"
    assert ("approve_refused", OUTSIDER) in [(e, a) for e, a, _ in _events(stack, request_id)]
