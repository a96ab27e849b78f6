"""On-call data as approvers and auto-approval: PagerDuty and Opsgenie stand-ins, asked on
every decision (LATCHKEY_ONCALL_CACHE_SECONDS=0 in the test stack)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app.models import AccessRequest, AuditEvent, RequestStatus
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
from app.testing.stack import LocalStack
from tests.e2e.conftest import OG_SCHEDULE, PD_POLICY, PD_SERVICE
from tests.factories import GROUP_NAME


def _trail(stack: LocalStack, request_id: uuid.UUID) -> list[tuple[str, dict]]:
    with stack.database().session() as session:
        rows = session.execute(
            select(AuditEvent.event, AuditEvent.details)
            .where(AuditEvent.request_id == request_id)
            .order_by(AuditEvent.seq)
        ).all()
    return [(e, d) for e, d in rows]


def _status(stack: LocalStack, request_id: uuid.UUID) -> RequestStatus:
    with stack.database().session() as session:
        request = session.get(AccessRequest, request_id)
        assert request is not None
        return request.status


def _request(stack: LocalStack, person: Person, flow: str) -> tuple[uuid.UUID, RecordedCall]:
    """Submit a request and wait for its card: posted once the worker has decided whether a
    human must (the card of an auto-approved request comes after its approval)."""
    mark = stack.slack.mark()
    submit_request(stack, person, flow=flow, target="admins", seconds=3600, reason="INC-7 fix")
    card = stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel", "").startswith("C") and f"<@{person.user_id}>" in a["text"],
        since=mark,
    )
    with stack.database().session() as session:
        request_id = session.execute(
            select(AccessRequest.id)
            .where(AccessRequest.requester_id == person.user_id)
            .order_by(AccessRequest.created_at.desc())  # type: ignore[attr-defined]
        ).scalar()
    assert request_id is not None
    return request_id, card


def test_only_the_first_on_call_level_is_auto_approved_and_only_during_an_incident(
    stack: LocalStack,
) -> None:
    first, second = new_person(stack, name="first"), new_person(stack, name="second")
    stack.pagerduty.set_oncalls(  # type: ignore[attr-defined]
        [
            dict(
                level=1,
                email=first.email,
                name="First",
                user_id="PFIRST",
                schedule_id=None,
                escalation_policy_id=PD_POLICY,
            ),
            dict(
                level=2,
                email=second.email,
                name="Second",
                user_id="PSECOND",
                schedule_id=None,
                escalation_policy_id=PD_POLICY,
            ),
        ]
    )
    # No incident open: even the first responder waits for a human.
    quiet, _ = _request(stack, first, "pd-auto")
    assert _status(stack, quiet) == RequestStatus.PENDING
    assert "auto_approved" not in [e for e, _ in _trail(stack, quiet)]

    incident = stack.pagerduty.open_incident(PD_SERVICE)  # type: ignore[attr-defined]
    during, _ = _request(stack, first, "pd-auto")
    dm_to(stack, first, "You now have")
    assert first.email in group_members(stack, GROUP_NAME)
    reason = next(d["reason"] for e, d in _trail(stack, during) if e == "auto_approved")
    assert f"on call in PagerDuty (escalation policy {PD_POLICY}, level ≤ 1)" in reason
    assert f"open pagerduty incident on service {PD_SERVICE}" in reason

    # The second level is on call too, but not at a level the flow approves.
    second_level, _ = _request(stack, second, "pd-auto")
    assert _status(stack, second_level) == RequestStatus.PENDING

    stack.pagerduty.resolve_incident(incident)  # type: ignore[attr-defined]
    after, _ = _request(stack, first, "pd-auto")
    assert _status(stack, after) == RequestStatus.PENDING


def test_whoever_opsgenie_has_on_call_approves_and_a_failed_lookup_is_audited(
    stack: LocalStack,
) -> None:
    requester, dba, bystander = (new_person(stack, name=n) for n in ("req", "dba", "by"))
    stack.opsgenie.set_oncall(OG_SCHEDULE, [dba.email])  # type: ignore[attr-defined]
    _, card = _request(stack, requester, "og-approvers")
    assert "whoever is on call in Opsgenie (schedule dba-rota)" in str(card.args["blocks"])

    mark = stack.slack.mark()
    assert click(stack, bystander.user_id, ids.APPROVE_ACTION, card).status == 200
    said_to(stack, bystander.user_id, "not an approver", since=mark)
    assert click(stack, dba.user_id, ids.APPROVE_ACTION, card).status == 200
    dm_to(stack, requester, "You now have")
    assert requester.email in group_members(stack, GROUP_NAME)

    # A rota Opsgenie does not know: nobody is on call for it; the failure is on record.
    missing_id, missing = _request(stack, requester, "og-missing")
    assert request_id_on(missing) == str(missing_id)
    mark = stack.slack.mark()
    assert click(stack, dba.user_id, ids.APPROVE_ACTION, missing).status == 200
    said_to(stack, dba.user_id, "not an approver", since=mark)
    failed = [d for e, d in _trail(stack, missing_id) if e == "oncall_failed"]
    assert failed and "404" in failed[0]["error"] and failed[0]["asked"] == "approvers.oncall"
    assert _status(stack, missing_id) == RequestStatus.PENDING


def test_pagerduty_rate_limiting_past_its_retries_leaves_the_request_to_people(
    stack: LocalStack,
) -> None:
    first = new_person(stack, name="first")
    stack.pagerduty.set_oncalls(  # type: ignore[attr-defined]
        [dict(level=1, email=first.email, name="First", user_id="PFIRST2",
              schedule_id=None, escalation_policy_id=PD_POLICY)]
    )  # fmt: skip
    incident = stack.pagerduty.open_incident(PD_SERVICE)  # type: ignore[attr-defined]
    stack.pagerduty.rate_limit_next(50)  # type: ignore[attr-defined]
    try:
        request_id, card = _request(stack, first, "pd-auto")
    finally:
        stack.pagerduty.rate_limit_next(0)  # type: ignore[attr-defined]
        stack.pagerduty.resolve_incident(incident)  # type: ignore[attr-defined]
    assert _status(stack, request_id) == RequestStatus.PENDING
    assert request_id_on(card) == str(request_id)  # a card with buttons, for the approvers
    failed = [d for e, d in _trail(stack, request_id) if e == "oncall_failed"]
    assert failed and "429" in failed[0]["error"]
    assert failed[0]["asked"] == "auto_approve_during"
