"""Issue 12, point 10: the small things people noticed, each shown on the pure builders
(and, for Extend, on a real database)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app import lifecycle
from app.audit import AuditLog
from app.db import Database
from app.flows.policy import RequestInput
from app.models import AccessRequest, Grant, RequestStatus
from app.notify import extension_offered
from app.queries import grant_of
from app.slack import ids
from app.slack.blocks.cards import CardContext, approval_card, status_line
from app.slack.blocks.dms import requester_message, superseded, time_left
from app.slack.blocks.home import HeldGrant, HomeData, access_blocks
from app.slack.blocks.text import EXTEND_LABEL, decision_reason
from app.slack.listeners.commands import HELP
from tests import factories
from tests.factories import REQUESTER, make_flow

S = RequestStatus
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TZ = "Europe/Paris"


def _request(status: RequestStatus = S.ACTIVE, **fields: object) -> AccessRequest:
    return AccessRequest(
        id=uuid.uuid4(),
        flow="test-admin",
        target="admins",
        requester_id="U0REQ",
        reason="fix prod",
        requested_seconds=3600,
        status=status,
        **fields,
    )


def _grant(request: AccessRequest, **fields: object) -> Grant:
    values: dict[str, object] = {
        "granted_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
        **fields,
    }
    return Grant(
        request_id=request.id, provider="aws_iam_group", target="admins", principal="p", **values
    )


def _buttons(blocks: list[dict]) -> dict[str, str]:
    return {
        e["action_id"]: e["text"]["text"]
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e.get("type") == "button"
    }


# -- the auto-approval card names the person, not `<@U…>` --------------------------------


def test_auto_approval_card_shows_the_listed_person_as_a_mention() -> None:
    request = _request(S.APPROVED)
    ctx = CardContext(
        request, [], None, auto_reason="auto_approve: <@U0ANN> is in <!subteam^S0OPS>"
    )
    shown = json.dumps(approval_card(ctx), ensure_ascii=False)
    assert "Approved automatically — auto_approve: <@U0ANN> is in <!subteam^S0OPS>" in shown
    assert "&lt;@" not in shown


def test_a_hooks_reason_stays_inert_text() -> None:
    hook = "on_request: on call for <!channel> <@U0CEO> <https://x|y>"
    assert decision_reason(hook) == (
        "on_request: on call for &lt;!channel&gt; &lt;@U0CEO&gt; &lt;https://x|y&gt;"
    )
    # A rule's reason keeps only plain mentions; anything else stays escaped.
    assert decision_reason("not eligible: <!here> & <@U0X1>") == (
        "not eligible: &lt;!here&gt; &amp; <@U0X1>"
    )


# -- one DM per moment: the older DM never repeats the new one --------------------------


@pytest.mark.parametrize(
    ("status", "what", "old_words"),
    [
        (S.ACTIVE, "granted", "You asked for *admins* (test-admin) for 1h."),
        (S.EXPIRED, "ended", "Access to *admins* (test-admin) was granted at 13:00 Europe/Paris."),
        (S.REVOKED, "ended", "Access to *admins* (test-admin) was granted at 13:00 Europe/Paris."),
        (
            S.ACTIVE,
            "expiring",
            "Access to *admins* (test-admin) was granted at 13:00 Europe/Paris.",
        ),
    ],
)
def test_the_older_dm_keeps_its_own_words(status: RequestStatus, what: str, old_words: str) -> None:
    request = _request(status)
    grant = _grant(request, ended_at=NOW + timedelta(hours=1) if status != S.ACTIVE else None)
    grant.end_cause = {S.EXPIRED: "expired", S.REVOKED: "released"}.get(status)
    ctx = CardContext(request, [], grant)
    new_text, _ = requester_message(ctx, what, TZ, NOW)
    old_text, old_blocks = superseded(ctx, TZ, what, NOW)
    assert old_text == old_words
    assert old_text != new_text
    assert _buttons(old_blocks) == {}


def test_granting_reads_approved_granting() -> None:
    request = _request(S.GRANTING)
    text, _ = requester_message(CardContext(request, [], None), "approved", TZ, NOW)
    assert text == "Your request for *admins* (test-admin) was approved; granting…"
    assert status_line(request) == ":arrows_counterclockwise: Approved, granting…"
    extension = _request(S.GRANTING, extends_id=uuid.uuid4())
    text, _ = requester_message(CardContext(extension, [], None), "status", TZ, NOW)
    assert text.endswith("was approved; extending…")


# -- the expiry notice counts seconds when seconds are left -----------------------------


@pytest.mark.parametrize(
    ("left", "said"),
    [
        (timedelta(seconds=4), "in 4 seconds"),
        (timedelta(seconds=1), "in 1 second"),
        (timedelta(seconds=0), "in 0 seconds"),
        (timedelta(seconds=59), "in 59 seconds"),
        (timedelta(seconds=61), "in about 1m"),
        (timedelta(minutes=9, seconds=40), "in about 10m"),
    ],
)
def test_time_left(left: timedelta, said: str) -> None:
    assert time_left(left) == said


def test_expiry_notice_with_four_seconds_left() -> None:
    request = _request(S.ACTIVE)
    grant = _grant(request, expires_at=NOW + timedelta(seconds=4))
    text, _ = requester_message(CardContext(request, [], grant), "expiring", TZ, NOW)
    assert "(in 4 seconds)" in text and "about 1m" not in text


# -- Extend: one label, and only while an extension still fits --------------------------


def test_extend_has_one_label_everywhere() -> None:
    request = _request(S.ACTIVE)
    grant = _grant(request)
    _, dm = requester_message(CardContext(request, [], grant), "granted", TZ, NOW)
    home = access_blocks(HomeData("U0REQ", TZ, held=[HeldGrant(request, grant, True)]), NOW)
    assert _buttons(dm)[ids.EXTEND_ACTION] == _buttons(home)[ids.EXTEND_ACTION] == "Extend"
    assert EXTEND_LABEL == "Extend" and "*Extend*" in HELP and "Extend access" not in HELP


def test_no_extend_button_when_no_extension_fits() -> None:
    request = _request(S.ACTIVE)
    ctx = CardContext(request, [], _grant(request), extensions_allowed=False)
    _, blocks = requester_message(ctx, "expiring", TZ, NOW)
    assert set(_buttons(blocks)) == {ids.RELEASE_ACTION}


def _active(database: Database, audit: AuditLog, flow: object, seconds: int) -> AccessRequest:
    ask = RequestInput(
        flow="test-admin", target="admins", duration=timedelta(seconds=seconds), reason="fix"
    )
    with database.session() as session:
        request = lifecycle.submit(
            session=session, audit=audit, flow=flow, requester_id=REQUESTER, ask=ask
        )
        lifecycle.auto_decide(
            session=session, audit=audit, request_id=request.id, approve=True, reason="test"
        )
        factories.activate(
            session=session,
            audit=audit,
            request_id=request.id,
            provider="aws_iam_group",
            principal="sam@example.com",
            details={},
        )
    return request


def test_extend_is_offered_only_while_the_caps_leave_room(
    database: Database, audit: AuditLog
) -> None:
    hour = timedelta(hours=1)
    roomy = make_flow(durations=(hour,), max_duration=hour, max_extensions=2)
    used_up = make_flow(durations=(hour,), max_duration=hour, max_extensions=0)
    capped = make_flow(
        durations=(hour,), max_duration=hour, max_extensions=2, max_total_duration=hour
    )
    request = _active(database, audit, roomy, 3600)
    with database.session() as session:
        stored = session.get(AccessRequest, request.id)
        grant = grant_of(session, request.id)
        assert extension_offered(session, roomy, stored, grant)
        assert not extension_offered(session, used_up, stored, grant)
        # A one-hour grant under a one-hour total: no duration fits any more.
        assert not extension_offered(session, capped, stored, grant)
        assert not extension_offered(session, roomy, stored, None)


def test_extend_is_hidden_once_max_extensions_are_used(database: Database, audit: AuditLog) -> None:
    from app.db import utcnow
    from app.extensions import apply_extension, request_extension
    from app.flows.policy import allow
    from app.models import Decision

    hour = timedelta(hours=1)
    flow = make_flow(durations=(hour,), max_duration=hour, max_extensions=1)
    request = _active(database, audit, flow, 3600)
    with database.session() as session:
        extension = request_extension(
            session=session,
            audit=audit,
            flow=flow,
            parent_id=request.id,
            requester_id=REQUESTER,
            extra=hour,
            reason="more",
            now=utcnow(),
        )
    assert isinstance(extension, AccessRequest)
    with database.session() as session:
        lifecycle.decide(
            session=session,
            audit=audit,
            flow=flow,
            request_id=extension.id,
            decider_id=factories.APPROVER,
            verdict=allow("ok"),
            decision=Decision.APPROVE,
        )
    with database.session() as session:
        assert (
            apply_extension(
                session=session, audit=audit, flow=flow, extension_id=extension.id, now=utcnow()
            ).problem
            is None
        )
    with database.session() as session:
        stored = session.get(AccessRequest, request.id)
        assert not extension_offered(session, flow, stored, grant_of(session, request.id))


# -- the expiry notice leaves time to extend ---------------------------------------------


@pytest.mark.parametrize(
    ("grant", "lead"),
    [
        (timedelta(hours=2), timedelta(minutes=10)),  # expiry_notice caps it
        (timedelta(minutes=20), timedelta(minutes=2)),  # a tenth
        (timedelta(minutes=5), timedelta(minutes=1)),  # at least a minute…
        (timedelta(seconds=40), timedelta(seconds=20)),  # …but never more than half
        (timedelta(seconds=4), timedelta(seconds=2)),
    ],
)
def test_notice_lead(grant: timedelta, lead: timedelta) -> None:
    assert make_flow().notice_lead(grant) == lead
    assert make_flow(expiry_notice=timedelta(seconds=30)).notice_lead(grant) == min(
        lead, timedelta(seconds=30)
    )
