"""Living with a grant, end to end: notice, Extend, I'm done, Revoke, overlaps, drift.

Real web, worker and beat on real Redis; AWS through moto (behind a fault proxy); Slack
through the stand-in. Durations are seconds long so the clock can be watched.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.audit import AuditLog
from app.db import utcnow
from app.models import AccessRequest, AuditEvent, Grant, RequestStatus
from app.slack import ids
from app.testing.scenes import (
    Person,
    card_update,
    click,
    click_in_dm,
    dm_to,
    extend,
    group_members,
    new_person,
    said_to,
    submit_request,
)
from app.testing.slack_driver import plain_text_value, static_select_value
from app.testing.slack_standin import RecordedCall
from app.testing.stack import ADMIN, AUDIT_KEY, LocalStack, wait_until
from tests.factories import APPROVED_BY_CLICK, APPROVER, CHANNEL, GROUP_NAME, OUTSIDER

S = RequestStatus


def _card(
    stack: LocalStack, person: Person, known: set[str], prefix: str = "Access request"
) -> RecordedCall:
    """The newest card for this person's request that is not one of `known`."""

    def fresh(args: dict[str, Any]) -> bool:
        if args.get("channel") != CHANNEL or not args.get("text", "").startswith(
            f"{prefix} from <@{person.user_id}>"
        ):
            return False
        return not any(r in json.dumps(args.get("blocks", [])) for r in known)

    return stack.slack.wait_for("chat.postMessage", fresh, timeout=15)


def _request_id(card: RecordedCall) -> uuid.UUID:
    for block in card.args["blocks"]:
        if block.get("type") == "actions":
            return uuid.UUID(block["elements"][0]["value"])
    raise AssertionError("no buttons on the card")


def _granted(
    stack: LocalStack, person: Person, flow: str, seconds: int, known: set[str] | None = None
) -> tuple[uuid.UUID, RecordedCall]:
    """Ask, get approved, hold the access; returns the request id and its card."""
    response = submit_request(
        stack, person, flow=flow, target="admins", seconds=seconds, reason="deploy hotfix"
    )
    assert response.status == 200 and not response.body, response.body
    card = _card(stack, person, known or set())
    request_id = _request_id(card)
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    wait_until(lambda: _status(stack, request_id) == S.ACTIVE, 15, "the grant")
    return request_id, card


def _status(stack: LocalStack, request_id: uuid.UUID) -> RequestStatus:
    with stack.database().session() as session:
        request = session.get(AccessRequest, request_id)
        assert request is not None
        return request.status


def _grant(stack: LocalStack, request_id: uuid.UUID) -> Grant:
    with stack.database().session() as session:
        grant = session.execute(select(Grant).where(Grant.request_id == request_id)).scalar_one()
        return grant


def _events(stack: LocalStack, request_id: uuid.UUID) -> list[AuditEvent]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)
            ).scalars()
        )


def _names(stack: LocalStack, request_id: uuid.UUID) -> list[str]:
    return [e.event for e in _events(stack, request_id)]


def _holds(stack: LocalStack, person: Person) -> bool:
    return person.email in group_members(stack, GROUP_NAME)


def _buttons(blocks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found = []
    for block in blocks:
        elements = block.get("elements", []) if block.get("type") == "actions" else []
        if block.get("accessory", {}).get("type") == "button":
            elements = [block["accessory"]]
        found += [(e["action_id"], e.get("value", "")) for e in elements]
    return found


def test_extension_with_approval_moves_the_end_and_revokes_once(stack: LocalStack) -> None:
    person = new_person(stack)
    request_id, _ = _granted(stack, person, "lasting", 20)
    granted_dm = dm_to(stack, person, "You now have")
    assert (ids.EXTEND_ACTION, str(request_id)) in _buttons(granted_dm.args["blocks"])
    first_end = _grant(stack, request_id).expires_at

    assert extend(stack, person, request_id, 20, "migration still running").status == 200
    ext_card = _card(stack, person, set(), prefix="Extension request")
    assert "Extension request" in json.dumps(ext_card.args["blocks"])
    extension_id = _request_id(ext_card)
    assert _holds(stack, person), "access never lapses while an extension is pending"

    assert click(stack, APPROVER, ids.APPROVE_ACTION, ext_card).status == 200
    dm_to(stack, person, "Extended")
    new_end = _grant(stack, request_id).expires_at
    assert new_end == first_end + timedelta(seconds=20)

    # Past the original end, the old timed revoke is a no-op: access stays.
    wait_until(lambda: utcnow() > first_end + timedelta(seconds=2), 30, "the original end")
    assert _holds(stack, person) and _status(stack, request_id) == S.ACTIVE

    # Warned before the new end (a tenth of 40 s ahead), with Extend and I'm done.
    notice = dm_to(stack, person, "ends at", timeout=30)
    assert utcnow() < new_end
    assert {a for a, _ in _buttons(notice.args["blocks"])} == {
        ids.EXTEND_ACTION,
        ids.RELEASE_ACTION,
    }

    dm_to(stack, person, "expired", timeout=30)
    assert not _holds(stack, person)
    # The whole story, exactly: one extension, one notice before the new end, one revoke.
    assert _names(stack, request_id) == [
        *APPROVED_BY_CLICK,
        "granting",
        "granted",
        "extended",
        "expiry_notice_sent",
        "revoking",
        "expired",
    ]
    assert _names(stack, extension_id) == [
        "extension_requested",
        "decision_deferred",
        "approved",
        "decision_resumed",
        "extension_applied",
    ]
    with stack.database().session() as session:
        assert AuditLog(AUDIT_KEY.encode()).verify(session).ok


def test_automatic_extension_within_limits_then_release(stack: LocalStack) -> None:
    person = new_person(stack)
    request_id, card = _granted(stack, person, "self-extend", 20)
    first_end = _grant(stack, request_id).expires_at

    assert extend(stack, person, request_id, 20, "one more check").status == 200
    dm_to(stack, person, "Extended")
    assert _grant(stack, request_id).expires_at == first_end + timedelta(seconds=20)

    # The flow allows one extension: the second is refused with the reason.
    click_in_dm(stack, person, ids.EXTEND_ACTION, request_id)
    said_to(stack, person.user_id, "already extended 1 time")

    # Someone else cannot give the access back for them.
    mark = stack.slack.mark()
    click_in_dm(stack, Person(OUTSIDER, "dee@example.com"), ids.RELEASE_ACTION, request_id)
    said_to(stack, OUTSIDER, "Only the person who holds this access", since=mark)
    assert _holds(stack, person)

    click_in_dm(stack, person, ids.RELEASE_ACTION, request_id)
    wait_until(lambda: not _holds(stack, person), 10, "release to remove access at once")
    dm_to(stack, person, "was released by you")
    card_update(stack, card, f"Released by <@{person.user_id}> (the requester)")
    ended = [e for e in _events(stack, request_id) if e.event == "revoked"]
    assert ended and ended[0].details["cause"] == "released"

    click_in_dm(stack, person, ids.EXTEND_ACTION, request_id)
    said_to(stack, person.user_id, "has already ended")


def _press_revoke(
    stack: LocalStack, user_id: str, request_id: uuid.UUID, card: RecordedCall
) -> None:
    """Revoke on the grant's card, as `user_id`."""
    stack.driver.block_action(
        user_id,
        ids.REVOKE_ACTION,
        str(request_id),
        block_id=ids.GRANT_BLOCK,
        channel_id=card.response["channel"],
        message_ts=card.response["ts"],
    )


def test_approver_revokes_from_the_card_and_admin_by_command(stack: LocalStack) -> None:
    person = new_person(stack)
    request_id, card = _granted(stack, person, "test-admin", 3600)

    def press_revoke(user_id: str) -> None:
        _press_revoke(stack, user_id, request_id, card)

    mark = stack.slack.mark()
    press_revoke(OUTSIDER)
    said_to(stack, OUTSIDER, "Only approvers of test-admin and Latchkey admins", since=mark)
    assert "revoke_refused" in _names(stack, request_id) and _holds(stack, person)

    press_revoke(APPROVER)
    modal = stack.slack.wait_for(
        "views.open", lambda a: a.get("trigger_id") == stack.driver.last_trigger_id
    )
    reason = {
        ids.REVOKE_REASON_BLOCK: {
            ids.REVOKE_REASON_ACTION: {"type": "plain_text_input", "value": "left the incident"}
        }
    }
    assert stack.driver.view_submission(APPROVER, modal.response["view"], reason).status == 200
    wait_until(lambda: not _holds(stack, person), 10, "the revoke")
    dm = dm_to(stack, person, "was revoked")
    assert f"<@{APPROVER}>" in dm.args["text"] and "left the incident" in dm.args["text"]
    card_update(stack, card, f"Revoked by <@{APPROVER}>")

    other = new_person(stack)
    other_id, _ = _granted(stack, other, "test-admin", 3600, known={str(request_id)})
    short = str(other_id)[:8]
    refused = stack.driver.slash_command(OUTSIDER, f"revoke {short} suspicious")
    assert "Only approvers of test-admin" in refused.body
    usage = stack.driver.slash_command(ADMIN, f"revoke {short}")
    assert "reason is required" in usage.body
    done = stack.driver.slash_command(ADMIN, f"revoke {short} offboarding")
    assert "Revoking now" in done.body
    wait_until(lambda: not _holds(stack, other), 10, "the admin's revoke")
    assert f"<@{ADMIN}>" in dm_to(stack, other, "was revoked").args["text"]


def test_overlapping_grants_keep_access_until_the_last_ends(stack: LocalStack) -> None:
    person = new_person(stack)
    first, _ = _granted(stack, person, "test-admin", 3600)
    second, _ = _granted(stack, person, "test-admin", 3600, known={str(first)})

    click_in_dm(stack, person, ids.RELEASE_ACTION, first)
    wait_until(lambda: _status(stack, first) == S.REVOKED, 10, "the first grant to end")
    assert _holds(stack, person), "the second grant still covers this access"
    revoked = next(e for e in _events(stack, first) if e.event == "revoked")
    assert revoked.details["still_covered_by"] == [str(second)]

    click_in_dm(stack, person, ids.RELEASE_ACTION, second)
    wait_until(lambda: not _holds(stack, person), 10, "the last grant to remove access")


def test_reconciliation_repairs_drift_both_ways(stack: LocalStack) -> None:
    person = new_person(stack)
    request_id, card = _granted(stack, person, "test-admin", 3600)

    stack.iam().remove_user_from_group(GroupName=GROUP_NAME, UserName=person.email)
    stack.reconcile_until(lambda: _holds(stack, person), 20, "reconciliation to re-apply access")

    def drift_events() -> list[AuditEvent]:
        return [e for e in _events(stack, request_id) if e.event.startswith("drift_")]

    # The audit row is committed just after the provider call that re-applied the access.
    wait_until(lambda: len(drift_events()) >= 2, 10, "the re-apply's drift_repaired event")
    drift = drift_events()
    assert [e.event for e in drift][:2] == ["drift_found", "drift_repaired"]
    assert drift[0].details["drift"] == "missing"
    stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("thread_ts") == card.response["ts"] and "was missing" in a.get("text", ""),
    )

    click_in_dm(stack, person, ids.RELEASE_ACTION, request_id)
    wait_until(lambda: not _holds(stack, person), 10, "the release")
    stack.iam().add_user_to_group(GroupName=GROUP_NAME, UserName=person.email)
    stack.reconcile_until(lambda: not _holds(stack, person), 20, "reconciliation to revoke it")

    def repairs() -> list[str]:
        return [
            e.details["action"] for e in _events(stack, request_id) if e.event == "drift_repaired"
        ]

    # The audit row is committed just after the provider call that removed the access.
    wait_until(lambda: repairs()[-1] == "revoked", 10, "the revoke's drift_repaired event")
    assert (repairs()[0], repairs()[-1]) == ("re-applied", "revoked")
    stack.slack.wait_for(
        "chat.postMessage", lambda a: "still present after it ended" in a.get("text", "")
    )


def test_revoke_failing_at_the_provider_is_retried_until_it_succeeds(stack: LocalStack) -> None:
    person = new_person(stack)
    request_id, _ = _granted(stack, person, "test-admin", 4)
    stack.aws_faults.refuse("RemoveUserFromGroup")
    try:
        wait_until(
            lambda: _status(stack, request_id) == S.REVOKE_FAILED, 20, "the first failed revoke"
        )
        stack.slack.wait_for(
            "chat.postMessage",
            lambda a: a.get("text", "").startswith(
                f":rotating_light: Removing <@{person.user_id}>"
            ),
        )
        wait_until(
            lambda: stack.aws_faults.refused("RemoveUserFromGroup") >= 3, 30, "retries with backoff"
        )
        assert _holds(stack, person), "the provider refused: access is still there"
        assert "expired" not in _names(stack, request_id), "never marked ended unconfirmed"
    finally:
        stack.aws_faults.heal()
    dm_to(stack, person, "expired", timeout=30)
    assert not _holds(stack, person)
    names = _names(stack, request_id)
    assert names.count("revoke_failed") >= 2 and "revoke_retry" in names
    assert names[-1] == "expired" and names.count("expired") == 1


def test_slack_rate_limits_delay_messages_never_access(stack: LocalStack) -> None:
    person = new_person(stack)
    lifts = stack.slack.rate_limit("chat.", seconds=12, retry_after=3)
    started = time.monotonic()
    response = submit_request(
        stack, person, flow="oncall", target="admins", seconds=4, reason="PAGE-7 db is down"
    )
    assert response.status == 200
    wait_until(lambda: _holds(stack, person), 8, "the auto-approved grant")
    granted_after = time.monotonic() - started
    wait_until(lambda: not _holds(stack, person), 10, "the revoke at expiry")
    assert time.monotonic() < lifts, "grant and revoke both happened while Slack said 429"
    assert granted_after < 8

    # Messages were attempted, refused with 429, and arrive once the limit lifts.
    assert any(c.rate_limited for c in stack.slack.calls("chat.postMessage"))
    ended = dm_to(stack, person, "expired", timeout=40)
    assert ended.at >= lifts
    card = stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel") == CHANNEL and f"<@{person.user_id}>" in a.get("text", ""),
    )
    assert card.at >= lifts and "Access expired" in json.dumps(card.args["blocks"])


def _published(stack: LocalStack, user_id: str, after: float) -> dict[str, Any]:
    """The latest Home published for this person since `after` (waits for one)."""

    def latest() -> RecordedCall | None:
        calls = [
            c
            for c in stack.slack.calls("views.publish")
            if c.ok and c.args.get("user_id") == user_id and c.at >= after
        ]
        return calls[-1] if calls else None

    call = wait_until(latest, 15, f"a Home published for {user_id}")
    view = call.args["view"]
    return json.loads(view) if isinstance(view, str) else view


def test_app_home_and_list_show_what_the_db_holds(stack: LocalStack) -> None:
    holder = new_person(stack)
    active_id, _ = _granted(stack, holder, "test-admin", 3600)
    submit_request(stack, holder, flow="lasting", target="admins", seconds=30, reason="later")
    pending_card = _card(stack, holder, {str(active_id)})
    pending_id = _request_id(pending_card)

    opened = time.monotonic()
    assert stack.driver.app_home_opened(holder.user_id).status == 200
    home = _published(stack, holder.user_id, opened)
    buttons = _buttons(home["blocks"])
    with stack.database().session() as session:
        held = (
            session.execute(
                select(AccessRequest.id).where(
                    AccessRequest.requester_id == holder.user_id, AccessRequest.status == S.ACTIVE
                )
            )
            .scalars()
            .all()
        )
        waiting = (
            session.execute(
                select(AccessRequest.id).where(
                    AccessRequest.requester_id == holder.user_id, AccessRequest.status == S.PENDING
                )
            )
            .scalars()
            .all()
        )
    assert (
        {v for a, v in buttons if a == ids.RELEASE_ACTION}
        == {str(i) for i in held}
        == {str(active_id)}
    )
    assert (
        {v for a, v in buttons if a == ids.CANCEL_ACTION}
        == {str(i) for i in waiting}
        == {str(pending_id)}
    )
    assert (ids.EXTEND_ACTION, str(active_id)) in buttons

    # The Home also offers the person's own set-up (passkey, identity link), the list not.
    own = {ids.PASSKEY_SETUP_ACTION, ids.IDENTITY_LINK_ACTION}
    assert {a for a, _ in buttons} >= own
    listed = stack.driver.slash_command(holder.user_id, "list").json()
    assert _buttons(listed["blocks"]) == [b for b in buttons if b[0] not in own]

    opened = time.monotonic()
    stack.driver.app_home_opened(APPROVER)
    approver_home = _published(stack, APPROVER, opened)
    assert (ids.APPROVE_ACTION, str(pending_id)) in _buttons(approver_home["blocks"])

    # Approving from the Home works like the card, and the Home drops the request.
    clicked = time.monotonic()
    stack.driver.block_action(
        APPROVER, ids.APPROVE_ACTION, str(pending_id), view={"type": "home", "id": "V0HOME"}
    )
    wait_until(lambda: _status(stack, pending_id) == S.ACTIVE, 15, "the approval from Home")
    refreshed = _published(stack, APPROVER, clicked)
    assert (ids.APPROVE_ACTION, str(pending_id)) not in _buttons(refreshed["blocks"])


def test_a_revoke_submitted_after_the_grant_ended_is_acked_then_refused_by_dm(
    stack: LocalStack,
) -> None:
    # The approver opens Revoke; meanwhile the holder gives the access back. The
    # submission is acked at once (the modal closes) and the approver is told by DM why
    # nothing was revoked; the refusal is on the record.
    person = new_person(stack)
    request_id, card = _granted(stack, person, "test-admin", 3600)
    _press_revoke(stack, APPROVER, request_id, card)
    modal = stack.slack.wait_for(
        "views.open", lambda a: a.get("trigger_id") == stack.driver.last_trigger_id
    )
    click_in_dm(stack, person, ids.RELEASE_ACTION, request_id)
    wait_until(lambda: _status(stack, request_id) == S.REVOKED, 10, "the release")
    mark = stack.slack.mark()
    reason = {
        ids.REVOKE_REASON_BLOCK: {
            ids.REVOKE_REASON_ACTION: {"type": "plain_text_input", "value": "too late"}
        }
    }
    answer = stack.driver.view_submission(APPROVER, modal.response["view"], reason)
    assert answer.status == 200 and not answer.body, answer.body  # acked: the modal closes
    told = said_to(stack, APPROVER, "This access is not active", since=mark)
    assert told.args["channel"] == APPROVER and "revoked" in told.args["text"]
    wait_until(
        lambda: "revoke_refused" in _names(stack, request_id), 10, "the refusal on the record"
    )


def test_an_extension_submitted_past_the_flows_limit_is_acked_then_refused_by_dm(
    stack: LocalStack,
) -> None:
    # Two Extend modals open at once (two devices); the flow allows one extension. The
    # first submission extends; the second is acked at once and refused by DM, audited.
    person = new_person(stack)
    request_id, _ = _granted(stack, person, "self-extend", 3600)
    click_in_dm(stack, person, ids.EXTEND_ACTION, request_id)
    second = stack.slack.wait_for(
        "views.open", lambda a: a.get("trigger_id") == stack.driver.last_trigger_id
    )
    assert extend(stack, person, request_id, 20, "first device").status == 200
    dm_to(stack, person, "Extended")
    values = {
        ids.EXTEND_DURATION_BLOCK: {ids.EXTEND_DURATION_ACTION: static_select_value("20")},
        ids.EXTEND_REASON_BLOCK: {ids.EXTEND_REASON_ACTION: plain_text_value("second device")},
    }
    answer = stack.driver.view_submission(person.user_id, second.response["view"], values)
    assert answer.status == 200 and not answer.body, answer.body  # acked: the modal closes
    told = said_to(stack, person.user_id, "already extended 1 time")
    assert told.args["channel"] == person.user_id
    wait_until(
        lambda: "extend_refused" in _names(stack, request_id), 10, "the refusal on the record"
    )
