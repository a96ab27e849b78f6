"""Approvers are decided on the server at click time; every decision happens once."""

from __future__ import annotations

import json
import threading
import uuid

from sqlalchemy import func, select

from app.models import AccessRequest, Approval, AuditEvent, Grant, RequestStatus
from app.slack import ids
from app.testing.scenes import (
    Person,
    approval_card_for,
    card_update,
    click,
    dm_to,
    group_members,
    new_person,
    request_id_on,
    submit_request,
)
from app.testing.slack_driver import plain_text_value
from app.testing.stack import LocalStack, wait_until
from tests.factories import (
    APPROVER,
    APPROVER_GROUP,
    GROUP_APPROVER,
    GROUP_NAME,
    OUTSIDER,
    SECOND_APPROVER,
)


def _pending(stack: LocalStack, seconds: int = 3600) -> tuple[Person, object, uuid.UUID]:
    person = new_person(stack)
    submit_request(
        stack, person, flow="test-admin", target="admins", seconds=seconds, reason="on-call fix"
    )
    card = approval_card_for(stack, person)
    return person, card, uuid.UUID(request_id_on(card))


def _events(stack: LocalStack, request_id: uuid.UUID) -> list[tuple[str, str]]:
    with stack.database().session() as session:
        rows = session.execute(
            select(AuditEvent.event, AuditEvent.actor)
            .where(AuditEvent.request_id == request_id)
            .order_by(AuditEvent.seq)
        ).all()
    return [(e, a) for e, a in rows]


def _status(stack: LocalStack, request_id: uuid.UUID) -> RequestStatus:
    with stack.database().session() as session:
        return session.get(AccessRequest, request_id).status


def test_outsider_and_requester_are_refused_and_audited(stack: LocalStack) -> None:
    person, card, request_id = _pending(stack)
    shown = json.dumps(card.args["blocks"])
    assert (
        f"Approvers (listed in the flow): <@{APPROVER}>, <@{SECOND_APPROVER}>, <!subteam^{APPROVER_GROUP}>"
        in shown
    )
    for who, words in ((OUTSIDER, "not an approver"), (person.user_id, "your own request")):
        # The outsider is a fixed user of the shared stack: only words after this click count.
        mark = stack.slack.mark()
        assert click(stack, who, ids.APPROVE_ACTION, card).status == 200
        ephemeral = stack.slack.wait_for(
            "response_url",
            lambda a, who=who, words=words: a.get("user") == who and words in a.get("text", ""),
            since=mark,
        )
        assert ephemeral.args["channel"] == card.response["channel"]
    assert _status(stack, request_id) == RequestStatus.PENDING
    trail = _events(stack, request_id)
    # Each click was kept, keyed, by the web and decided by the worker, which refused it.
    assert [e for e in trail if e[0] == "decision_deferred"] == [
        ("decision_deferred", OUTSIDER),
        ("decision_deferred", person.user_id),
    ]
    assert [e for e in trail if e[0] not in ("decision_deferred", "decision_resumed")] == [
        ("requested", person.user_id),
        ("approve_refused", OUTSIDER),
        ("approve_refused", person.user_id),
    ]
    assert person.email not in group_members(stack, GROUP_NAME)


def test_group_member_approves_at_click_time(stack: LocalStack) -> None:
    person, card, request_id = _pending(stack)
    click(stack, GROUP_APPROVER, ids.APPROVE_ACTION, card)
    dm_to(stack, person, "You now have")
    assert person.email in group_members(stack, GROUP_NAME)
    assert ("approved", GROUP_APPROVER) in _events(stack, request_id)


def test_double_click_and_two_approvers_at_once_give_one_grant(stack: LocalStack) -> None:
    person, card, request_id = _pending(stack)
    mark = stack.slack.mark()
    clickers = [APPROVER, APPROVER, SECOND_APPROVER, GROUP_APPROVER, SECOND_APPROVER, APPROVER]
    barrier = threading.Barrier(len(clickers))
    statuses: list[int] = []

    def press(who: str) -> None:
        barrier.wait()
        statuses.append(click(stack, who, ids.APPROVE_ACTION, card).status)

    threads = [threading.Thread(target=press, args=(who,)) for who in clickers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * len(clickers)
    dm_to(stack, person, "You now have")
    card_update(stack, card, "Access granted")
    with stack.database().session() as session:
        grants = session.execute(
            select(func.count()).select_from(Grant).where(Grant.request_id == request_id)
        ).scalar_one()
        approvals = session.execute(
            select(func.count()).select_from(Approval).where(Approval.request_id == request_id)
        ).scalar_one()
    assert grants == 1 and approvals == 1
    events = [e for e, _ in _events(stack, request_id)]
    assert events.count("approved") == 1 and events.count("granted") == 1
    # The losers were told, not silently ignored.
    stack.slack.wait_for("response_url", lambda a: "already" in a.get("text", ""), since=mark)


def test_deny_with_a_reason(stack: LocalStack) -> None:
    person, card, request_id = _pending(stack)
    mark = stack.slack.mark()
    click(stack, SECOND_APPROVER, ids.DENY_ACTION, card)
    # Since the click: on the shared stack, another module's deny modal may be recorded.
    modal = stack.slack.wait_for(
        "views.open",
        lambda a: a.get("view", {}).get("callback_id") == ids.DENY_VIEW,
        since=mark,
    )
    values = {
        ids.DENY_REASON_BLOCK: {ids.DENY_REASON_ACTION: plain_text_value("use the <!here> runbook")}
    }
    assert (
        stack.driver.view_submission(SECOND_APPROVER, modal.response["view"], values).status == 200
    )
    denied = dm_to(stack, person, "was denied")
    assert (
        "&lt;!here&gt; runbook" in denied.args["text"]
        and f"<@{SECOND_APPROVER}>" in denied.args["text"]
    )
    card_update(stack, card, "Denied")
    assert _status(stack, request_id) == RequestStatus.DENIED
    # A later approval cannot resurrect a denied request.
    mark = stack.slack.mark()
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    stack.slack.wait_for(
        "response_url",
        lambda a: a.get("user") == APPROVER and "already denied" in a.get("text", ""),
        since=mark,
    )
    assert _status(stack, request_id) == RequestStatus.DENIED


def test_outsider_cannot_deny_either(stack: LocalStack) -> None:
    _, card, request_id = _pending(stack)
    mark = stack.slack.mark()
    click(stack, OUTSIDER, ids.DENY_ACTION, card)
    stack.slack.wait_for(
        "response_url",
        lambda a: a.get("user") == OUTSIDER and "not an approver" in a.get("text", ""),
        since=mark,
    )
    wait_until(
        lambda: ("deny_refused", OUTSIDER) in _events(stack, request_id), 15, "the refusal audited"
    )
    assert _status(stack, request_id) == RequestStatus.PENDING
