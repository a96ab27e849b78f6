"""Flow rules end to end: who sees what, quorum, shorter approvals."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

from sqlalchemy import func, select

from app.models import Approval, AuditEvent, Grant
from app.queries import grant_of
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
from app.testing.stack import LocalStack
from tests.conftest import POSTGRES_URL
from tests.factories import APPROVER, GROUP_APPROVER, GROUP_NAME, SECOND_APPROVER


def test_modal_offers_only_flows_the_person_may_request_and_submit_checks_again(
    stack: LocalStack,
) -> None:
    person = new_person(stack, iam_user=False)
    view = open_request_modal(stack, person)
    flow_block = next(b for b in view["blocks"] if b.get("block_id") == ids.FLOW_BLOCK)
    offered = {o["value"] for o in flow_block["element"]["options"]}
    assert offered == {
        "test-admin",
        "two-person",
        "short-fuse",
        "oncall",
        "broken-hook",
        "emergency",
        "lasting",
        "self-extend",
        "db-read",
        "gcp-viewer",
        "google-group",
        "entra-pim",
        "entra-member",
        "okta-group",
        "mapped-only",
        "routed",
        "dm-approvers",
        "escalating",
        "dm-quorum",
        "pd-auto",
        "og-approvers",
        "og-missing",
        "on-behalf",
        "unroutable",
        "passkey",
        "passkey-two",
        "passkey-glass",
        "verified",
        # Written only where there is a PostgreSQL to make logins in (tests/e2e/conftest.py).
        *(["ephemeral-db", "checkout-dba"] if POSTGRES_URL else []),
        "ephemeral-mariadb",
        # Admits a service client; people in its requesters may ask too (issue 18.4).
        "migrations",
        "console-admin",
    }
    # A forged submission for the restricted flow is refused on the server.
    response = submit_request(
        stack, person, flow="restricted", target="admins", seconds=4, reason="x", view=view
    )
    assert response.json()["errors"][ids.TARGET_BLOCK].startswith(
        "You are not among the people who may request"
    )


def test_quorum_of_two_needs_two_distinct_approvers(stack: LocalStack) -> None:
    person = new_person(stack)
    submit_request(
        stack, person, flow="two-person", target="admins", seconds=3600, reason="two-person rule"
    )
    card = approval_card_for(stack, person)
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    card_update(stack, card, f"1 of 2 approvals: <@{APPROVER}>")
    mark = stack.slack.mark()
    click(stack, APPROVER, ids.APPROVE_ACTION, card)  # the same approver again does not count
    stack.slack.wait_for(
        "response_url",
        lambda a: a.get("user") == APPROVER and "already decided" in a.get("text", ""),
        since=mark,
    )
    assert person.email not in group_members(stack, GROUP_NAME)
    click(stack, SECOND_APPROVER, ids.APPROVE_ACTION, card)
    dm_to(stack, person, "You now have")
    assert person.email in group_members(stack, GROUP_NAME)


def test_many_approvers_at_once_on_a_quorum_of_two_give_one_grant(stack: LocalStack) -> None:
    person = new_person(stack)
    submit_request(stack, person, flow="two-person", target="admins", seconds=3600, reason="race")
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    clickers = [APPROVER, SECOND_APPROVER, GROUP_APPROVER] * 3
    barrier = threading.Barrier(len(clickers))

    def press(who: str) -> None:
        barrier.wait()
        click(stack, who, ids.APPROVE_ACTION, card)

    threads = [threading.Thread(target=press, args=(who,)) for who in clickers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    dm_to(stack, person, "You now have")
    with stack.database().session() as session:
        approvals = (
            session.execute(select(Approval.approver_id).where(Approval.request_id == request_id))
            .scalars()
            .all()
        )
        grants = session.execute(
            select(func.count()).select_from(Grant).where(Grant.request_id == request_id)
        ).scalar_one()
        events = (
            session.execute(select(AuditEvent.event).where(AuditEvent.request_id == request_id))
            .scalars()
            .all()
        )
    # Exactly two approvals counted (the quorum), each person once, and one grant.
    assert len(approvals) == len(set(approvals)) == 2
    assert grants == 1
    assert list(events).count("approved") == 1 and list(events).count("granted") == 1
    assert list(events).count("approval_recorded") == 1


def test_approver_shortens_the_duration_and_the_grant_ends_then(stack: LocalStack) -> None:
    person = new_person(stack)
    submit_request(
        stack, person, flow="test-admin", target="admins", seconds=3600, reason="shorter please"
    )
    card = approval_card_for(stack, person)
    select_menu = next(
        e
        for b in card.args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == ids.APPROVE_FOR_ACTION
    )
    four_seconds = next(o["value"] for o in select_menu["options"] if o["value"].endswith("|4"))
    stack.driver.block_action(
        APPROVER,
        ids.APPROVE_FOR_ACTION,
        four_seconds,
        action_type="static_select",
        block_id=ids.DECISION_BLOCK,
        channel_id=card.response["channel"],
        message_ts=card.response["ts"],
    )
    dm_to(stack, person, "You now have")
    card_update(stack, card, "4s (asked 1h)")
    dm_to(stack, person, "expired", timeout=20)
    assert person.email not in group_members(stack, GROUP_NAME)
    with stack.database().session() as session:
        grant = grant_of(session, uuid.UUID(four_seconds.split("|")[0]))
    assert grant.expires_at - grant.granted_at == timedelta(seconds=4)
    assert json.dumps(card.args).count("Approve for") >= 2


def _events(stack: LocalStack, request_id: uuid.UUID) -> list[str]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent.event)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)
            ).scalars()
        )


def _card_of_any_status(stack: LocalStack, person) -> dict:  # type: ignore[no-untyped-def]
    return stack.slack.wait_for(
        "chat.postMessage",
        lambda a: (
            a.get("channel", "").startswith("C") and f"<@{person.user_id}>" in a.get("text", "")
        ),
    )


def test_on_request_hook_auto_approves_with_its_reason(stack: LocalStack) -> None:
    person = new_person(stack)
    submit_request(
        stack,
        person,
        flow="oncall",
        target="admins",
        seconds=3600,
        reason="PAGE-77 checkout is down",
    )
    dm_to(stack, person, "You now have")
    assert person.email in group_members(stack, GROUP_NAME)
    card = _card_of_any_status(stack, person)
    # Nobody is asked to decide; once active, the card may offer approvers Revoke.
    offered = {
        e["action_id"] for b in card.args["blocks"] if b["type"] == "actions" for e in b["elements"]
    }
    assert not offered & {ids.APPROVE_ACTION, ids.DENY_ACTION, ids.APPROVE_FOR_ACTION}
    card_update(stack, card, "Approved automatically — on_request: on call for PAGE-77")


def test_on_request_hook_can_deny(stack: LocalStack) -> None:
    person = new_person(stack)
    submit_request(
        stack, person, flow="oncall", target="admins", seconds=3600, reason="weekend tinkering"
    )
    denied = dm_to(stack, person, "was denied automatically")
    assert "no weekend changes" in denied.args["text"]
    assert person.email not in group_members(stack, GROUP_NAME)


def test_a_broken_hook_never_grants_and_is_audited(stack: LocalStack) -> None:
    person = new_person(stack)
    submit_request(
        stack, person, flow="broken-hook", target="admins", seconds=3600, reason="PAGE-1"
    )
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    assert _events(stack, request_id) == ["requested", "hook_failed"]
    assert person.email not in group_members(stack, GROUP_NAME)
    click(stack, APPROVER, ids.APPROVE_ACTION, card)  # a human can still decide
    dm_to(stack, person, "You now have")


def test_get_requesters_and_get_approvers_hooks(stack: LocalStack) -> None:
    from app.testing.scenes import Person
    from tests.factories import OUTSIDER

    stack.slack.add_user("U0HOOKED", name="hooked", email="hooked@example.com")
    stack.iam().create_user(UserName="hooked@example.com")
    person = Person("U0HOOKED", "hooked@example.com")
    view = open_request_modal(stack, person)
    flow_block = next(b for b in view["blocks"] if b.get("block_id") == ids.FLOW_BLOCK)
    assert "hooked" in {o["value"] for o in flow_block["element"]["options"]}
    submit_request(
        stack,
        person,
        flow="hooked",
        target="admins",
        seconds=3600,
        reason="hook named me",
        view=view,
    )
    card = approval_card_for(stack, person)
    click(
        stack, OUTSIDER, ids.APPROVE_ACTION, card
    )  # named by get_approvers, not by the flow's lists
    dm_to(stack, person, "You now have")
    assert person.email in group_members(stack, GROUP_NAME)
