"""Who hears about a request: a target's own channel, approvers' DMs, watchers."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from app.models import AccessRequest, Approval, AuditEvent, RequestStatus
from app.slack import ids
from app.testing.scenes import (
    Person,
    click,
    dm_to,
    group_members,
    new_person,
    request_id_on,
    said_to,
    submit_request,
)
from app.testing.slack_standin import RecordedCall
from app.testing.stack import LocalStack, wait_until
from tests.factories import (
    APPROVER,
    CHANNEL,
    DBA_CHANNEL,
    GROUP_APPROVER,
    GROUP_NAME,
    HOOK_LEAD,
    NO_BOT_CHANNEL,
    OUTSIDER,
    SECOND_APPROVER,
    WATCH_CHANNEL,
    WATCHER,
)


def _posted_to(
    stack: LocalStack, where: str, person: Person, *, since: int, timeout: float = 15
) -> RecordedCall:
    """The card about this person's request posted to `where` (a channel, or a user's DM)."""
    return stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel") == where and f"<@{person.user_id}>" in a.get("text", ""),
        since=since,
        timeout=timeout,
    )


def _has_buttons(card: RecordedCall) -> bool:
    return any(b.get("type") == "actions" for b in card.args.get("blocks", []))


def _updated(stack: LocalStack, copy: RecordedCall, contains: str) -> RecordedCall:
    """The copy re-rendered (chat.update of its own channel and ts) to say `contains`."""
    return stack.slack.wait_for(
        "chat.update",
        lambda a: (
            a.get("channel") == copy.response["channel"]
            and a.get("ts") == copy.response["ts"]
            and contains in json.dumps(a.get("blocks", []), ensure_ascii=False)
        ),
    )


def test_a_target_with_its_own_channel_is_decided_there(stack: LocalStack) -> None:
    person = new_person(stack)
    mark = stack.slack.mark()
    submit_request(stack, person, flow="routed", target="dba", seconds=3600, reason="vacuum")
    card = _posted_to(stack, DBA_CHANNEL, person, since=mark)
    assert _has_buttons(card)
    # The flow's own channel hears nothing of it; its other target still goes there.
    submit_request(stack, person, flow="routed", target="admins", seconds=3600, reason="deploy")
    other = _posted_to(stack, CHANNEL, person, since=mark)
    assert request_id_on(other) != request_id_on(card)
    dba_cards = [
        c
        for c in stack.slack.calls("chat.postMessage", since=mark)
        if f"<@{person.user_id}>" in c.args.get("text", "") and c.args.get("channel") == CHANNEL
    ]
    assert len(dba_cards) == 1  # only the admins request's card

    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    _updated(stack, card, "Access granted")
    assert person.email in group_members(stack, GROUP_NAME)


def test_approvers_decide_in_their_dms_and_every_copy_follows(stack: LocalStack) -> None:
    person = new_person(stack)
    mark = stack.slack.mark()
    submit_request(stack, person, flow="dm-approvers", target="admins", seconds=3600, reason="fix")
    channel_card = _posted_to(stack, CHANNEL, person, since=mark)
    request_id = uuid.UUID(request_id_on(channel_card))
    # Each approver (listed, or in the flow's user group) gets the card with its buttons.
    copies = {
        who: _posted_to(stack, who, person, since=mark)
        for who in (APPROVER, SECOND_APPROVER, GROUP_APPROVER)
    }
    assert all(_has_buttons(c) and c.response["channel"].startswith("D") for c in copies.values())
    # Watchers (a person and a channel) see it without buttons; the requester gets none.
    watched = [_posted_to(stack, w, person, since=mark) for w in (WATCHER, WATCH_CHANNEL)]
    assert not any(_has_buttons(c) for c in watched)
    assert not [
        c
        for c in stack.slack.calls("chat.postMessage", since=mark)
        if c.args.get("channel") == person.user_id and _has_buttons(c) and "Approve" in str(c.args)
    ]

    # One approver approves in their DM: the channel's card, the other approvers' DMs and
    # the watchers' copies all show the grant.
    assert click(stack, SECOND_APPROVER, ids.APPROVE_ACTION, copies[SECOND_APPROVER]).status == 200
    dm_to(stack, person, "You now have")
    for copy in (channel_card, copies[APPROVER], copies[GROUP_APPROVER], *watched):
        _updated(stack, copy, "Access granted")
    assert person.email in group_members(stack, GROUP_NAME)

    # A click on a copy that is now stale is decided by the server, refused, and told.
    mark = stack.slack.mark()
    assert click(stack, APPROVER, ids.APPROVE_ACTION, copies[APPROVER]).status == 200
    said_to(stack, APPROVER, "already", since=mark)
    with stack.database().session() as session:
        approvals = session.execute(
            select(Approval.approver_id).where(Approval.request_id == request_id)
        ).all()
        approved = session.execute(
            select(AuditEvent.actor).where(
                AuditEvent.request_id == request_id, AuditEvent.event == "approved"
            )
        ).all()
    assert [a for (a,) in approvals] == [SECOND_APPROVER]
    assert [a for (a,) in approved] == [SECOND_APPROVER]


def test_a_request_nobody_decides_escalates_step_by_step(stack: LocalStack) -> None:
    person = new_person(stack)
    mark = stack.slack.mark()
    submit_request(stack, person, flow="escalating", target="admins", seconds=3600, reason="db")
    card = _posted_to(stack, CHANNEL, person, since=mark)
    request_id = uuid.UUID(request_id_on(card))
    # Step 1 (after 2 s) tells the watcher and whoever the flow's hook names (by email):
    # copies without buttons, a line on the card.
    for told in (_posted_to(stack, who, person, since=mark) for who in (WATCHER, HOOK_LEAD)):
        assert not _has_buttons(told)
    _updated(stack, card, f"escalated to <@{WATCHER}>, <@{HOOK_LEAD}> (told)")
    # Step 2 (after 3 s) makes someone who is no approver of the flow one of this request.
    extra = _posted_to(stack, OUTSIDER, person, since=mark)
    assert _has_buttons(extra)
    _updated(stack, card, f"escalated to <@{OUTSIDER}> (may now approve)")
    stack.slack.wait_for(
        "chat.postMessage",
        lambda a: (
            a.get("thread_ts") == card.response["ts"]
            and f"<@{OUTSIDER}> (may now approve)" in a.get("text", "")
        ),
        since=mark,
    )
    assert click(stack, OUTSIDER, ids.APPROVE_ACTION, extra).status == 200
    dm_to(stack, person, "You now have")
    assert person.email in group_members(stack, GROUP_NAME)
    with stack.database().session() as session:
        trail = session.execute(
            select(AuditEvent.event, AuditEvent.actor, AuditEvent.details)
            .where(AuditEvent.request_id == request_id)
            .order_by(AuditEvent.seq)
        ).all()
    steps = [d for e, _, d in trail if e == "escalated"]
    assert [(s["step"], s["users"], s.get("hook_users"), s["may_approve"]) for s in steps] == [
        (1, [WATCHER], [HOOK_LEAD], False),
        (2, [OUTSIDER], None, True),
    ]
    assert ("approved", OUTSIDER) in [(e, a) for e, a, _ in trail]


def test_the_watcher_told_by_a_step_still_cannot_approve(stack: LocalStack) -> None:
    person = new_person(stack)
    mark = stack.slack.mark()
    submit_request(stack, person, flow="escalating", target="admins", seconds=3600, reason="db")
    card = _posted_to(stack, CHANNEL, person, since=mark)
    _updated(stack, card, f"escalated to <@{WATCHER}>, <@{HOOK_LEAD}> (told)")
    assert click(stack, WATCHER, ids.APPROVE_ACTION, card).status == 200
    said_to(stack, WATCHER, "not an approver", since=mark)
    with stack.database().session() as session:
        request = session.get(AccessRequest, uuid.UUID(request_id_on(card)))
        assert request is not None and request.status == RequestStatus.PENDING


def test_reminders_go_to_the_dms_of_approvers_who_have_not_decided(stack: LocalStack) -> None:
    person = new_person(stack)
    mark = stack.slack.mark()
    submit_request(stack, person, flow="dm-quorum", target="admins", seconds=3600, reason="db")
    copies = {
        who: _posted_to(stack, who, person, since=mark)
        for who in (APPROVER, SECOND_APPROVER, GROUP_APPROVER)
    }
    # One of the two approvals needed, well before the reminder (halfway through 12 s).
    assert click(stack, APPROVER, ids.APPROVE_ACTION, copies[APPROVER]).status == 200
    _updated(stack, copies[SECOND_APPROVER], "1 of 2 approvals")

    def reminder_in(copy: RecordedCall) -> list[RecordedCall]:
        return [
            c
            for c in stack.slack.calls("chat.postMessage", since=mark)
            if c.args.get("thread_ts") == copy.response["ts"]
            and c.args.get("channel") == copy.response["channel"]
        ]

    for who in (SECOND_APPROVER, GROUP_APPROVER):
        stack.slack.wait_for(
            "chat.postMessage",
            lambda a, who=who: (
                a.get("thread_ts") == copies[who].response["ts"] and f"<@{who}>" in a["text"]
            ),
            since=mark,
        )
    assert reminder_in(copies[APPROVER]) == []  # who has decided is not nagged


def test_a_card_the_bot_cannot_post_is_told_to_the_requester_once(stack: LocalStack) -> None:
    person = new_person(stack)
    mark = stack.slack.mark()
    submit_request(stack, person, flow="unroutable", target="admins", seconds=3600, reason="x")
    warning = stack.slack.wait_for(
        "chat.postMessage",
        lambda a: (
            a.get("channel") == person.user_id
            and f"could not be posted to <#{NO_BOT_CHANNEL}>" in a.get("text", "")
        ),
        since=mark,
    )
    assert "the bot is not a member of it" in warning.args["text"]

    # The sweep tries the card again (Slack refuses again); the requester is not told twice.
    def refused_posts() -> list[RecordedCall]:
        return [
            c
            for c in stack.slack.calls("chat.postMessage", since=mark)
            if c.args.get("channel") == NO_BOT_CHANNEL and not c.ok
        ]

    wait_until(lambda: len(refused_posts()) >= 2, 30, "the sweep's second try of the card")
    to_person = [
        c.args.get("text", "")
        for c in stack.slack.calls("chat.postMessage", since=mark)
        if c.args.get("channel") == person.user_id
    ]
    assert len([t for t in to_person if "could not be posted" in t]) == 1
    assert not [t for t in to_person if "sent for approval" in t]
    with stack.database().session() as session:
        request = session.execute(
            select(AccessRequest).where(AccessRequest.requester_id == person.user_id)
        ).scalar_one()
    assert request.status == RequestStatus.PENDING and request.approval_message_ts is None
