"""Requests on behalf: an approver asks for someone else, whose eligibility counts, who is
told and may cancel, and who (like the one who asked) cannot approve it."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from app.models import AccessRequest, AuditEvent, RequestStatus
from app.slack import ids
from app.slack.blocks.modals import request_modal
from app.testing.scenes import (
    Person,
    click,
    click_in_dm,
    dm_to,
    group_members,
    new_person,
    request_id_on,
    said_to,
    submit_request,
)
from app.testing.slack_standin import RecordedCall
from app.testing.stack import LocalStack, wait_until
from tests.factories import APPROVER, GROUP_NAME, OUTSIDER, SECOND_APPROVER, make_flow

LEAD = Person(APPROVER, "ann@example.com")


def _for(stack: LocalStack, who: Person, *, by: Person = LEAD) -> tuple[dict, RecordedCall | None]:
    mark = stack.slack.mark()
    response = submit_request(
        stack,
        by,
        flow="on-behalf",
        target="admins",
        seconds=3600,
        reason="pairing",
        for_user=who.user_id,
    )
    if response.body:  # the form answered with field errors
        return response.json(), None
    card = stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel", "").startswith("C") and f"<@{who.user_id}>" in a["text"],
        since=mark,
    )
    return {}, card


def test_an_approver_requests_for_someone_who_is_told_and_cannot_approve_it(
    stack: LocalStack,
) -> None:
    beneficiary = new_person(stack)
    mark = stack.slack.mark()
    _, card = _for(stack, beneficiary)
    assert card is not None
    request_id = uuid.UUID(request_id_on(card))
    assert f"<@{beneficiary.user_id}> (asked by <@{APPROVER}>)" in str(card.args["blocks"])
    dm_to(stack, beneficiary, f"<@{APPROVER}> asked for")
    said_to(stack, APPROVER, f"for <@{beneficiary.user_id}>", since=mark)

    # Neither the person it is for nor the one who asked may approve it.
    for who, words in ((beneficiary.user_id, "your own request"), (APPROVER, "You asked for")):
        mark = stack.slack.mark()
        assert click(stack, who, ids.APPROVE_ACTION, card).status == 200
        said_to(stack, who, words, since=mark)
    assert click(stack, SECOND_APPROVER, ids.APPROVE_ACTION, card).status == 200
    dm_to(stack, beneficiary, "You now have")
    # The access is the beneficiary's, at their principal.
    assert beneficiary.email in group_members(stack, GROUP_NAME)
    with stack.database().session() as session:
        requested = session.execute(
            select(AuditEvent.actor, AuditEvent.subject, AuditEvent.details).where(
                AuditEvent.request_id == request_id, AuditEvent.event == "requested"
            )
        ).one()
        refused = session.execute(
            select(AuditEvent.actor).where(
                AuditEvent.request_id == request_id, AuditEvent.event == "approve_refused"
            )
        ).all()
    assert requested.actor == APPROVER and requested.subject == beneficiary.user_id
    assert requested.details["on_behalf_of"] == beneficiary.user_id
    assert {a for (a,) in refused} == {beneficiary.user_id, APPROVER}


def test_a_filer_blanked_from_the_row_still_cannot_approve_it(stack: LocalStack) -> None:
    """An insider erases requested_by so that the filer's click is taken as an approver's:
    the keyed `requested` event still names the filer, so the worker grants nothing."""
    beneficiary = new_person(stack)
    _, card = _for(stack, beneficiary)
    assert card is not None
    request_id = uuid.UUID(request_id_on(card))
    with stack.database().session() as session:
        session.execute(
            update(AccessRequest).where(AccessRequest.id == request_id).values(requested_by=None)
        )
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200

    def failure() -> str | None:
        with stack.database().session() as session:
            request = session.get(AccessRequest, request_id)
            failed = request is not None and request.status == RequestStatus.FAILED
            return (request.failure or "-") if failed else None

    assert "audit trail" in wait_until(failure, 30, "the refused grant")
    assert beneficiary.email not in group_members(stack, GROUP_NAME)


def test_the_beneficiary_can_cancel_a_request_made_for_them(stack: LocalStack) -> None:
    beneficiary = new_person(stack)
    _, card = _for(stack, beneficiary)
    assert card is not None
    request_id = request_id_on(card)
    dm_to(stack, beneficiary, f"<@{APPROVER}> asked for")
    assert click_in_dm(stack, beneficiary, ids.CANCEL_ACTION, request_id).status == 200
    stack.slack.wait_for(
        "chat.update",
        lambda a: a.get("ts") == card.response["ts"] and "Cancelled" in str(a.get("blocks")),
    )
    with stack.database().session() as session:
        request = session.get(AccessRequest, uuid.UUID(request_id))
        assert request is not None and request.status == RequestStatus.CANCELLED


def test_eligibility_is_the_beneficiarys_and_only_approvers_may_ask(stack: LocalStack) -> None:
    # Someone outside the flow's requesters (another domain) cannot be requested for.
    stranger = Person(f"U0X{uuid.uuid4().hex[:6].upper()}", "sam@other.org")
    stack.slack.add_user(stranger.user_id, name="sam", email=stranger.email)
    errors, card = _for(stack, stranger)
    assert card is None
    assert errors["errors"][ids.FOR_BLOCK].startswith(f"<@{stranger.user_id}> cannot request this")
    # Someone who may request the flow but does not approve it may not ask for others.
    outsider = Person(OUTSIDER, "dee@example.com")
    errors, card = _for(stack, new_person(stack), by=outsider)
    assert card is None
    assert "Only approvers of on-behalf and Latchkey admins" in errors["errors"][ids.FOR_BLOCK]


def test_the_for_picker_shows_only_where_this_person_may_use_it() -> None:
    flow = make_flow(name="on-behalf", on_behalf=True)
    shown = request_modal([flow], flow, for_others=frozenset({"on-behalf"}))
    hidden = request_modal([flow], flow)
    assert ids.FOR_BLOCK in [b.get("block_id") for b in shown["blocks"]]
    assert ids.FOR_BLOCK not in [b.get("block_id") for b in hidden["blocks"]]
