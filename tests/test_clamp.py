"""Decisions clamped to the flow as it is now, forged durations refused, drafts single use.

On each backend: what `decide` stores and audits, what the worker's clamp records, what the
keyed audit chain then vouches for (proof.py), and the break-glass drafts behind a view id.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app import lifecycle, proof
from app.audit import AuditLog
from app.db import Database, utcnow
from app.flows.policy import RequestInput, allow
from app.flows.schema import Flow
from app.granting import clamp_to_flow
from app.models import AccessRequest, AuditEvent, Decision, RequestDraft, RequestStatus
from app.slack.listeners.requests import DRAFT_TTL, save_draft, take_draft
from tests.factories import APPROVER, REQUESTER, SECOND_APPROVER, make_flow

S = RequestStatus
HOUR, M = timedelta(hours=1), timedelta(minutes=1)
# The same flow after its admin lowered max_duration from 1h to 20m.
LOWERED = make_flow(durations=(10 * M, 20 * M), max_duration=20 * M)
AS_ASKED = make_flow(durations=(10 * M, 20 * M, HOUR), max_duration=HOUR)


def _submit(db: Database, audit: AuditLog, seconds: int = 3600) -> AccessRequest:
    ask = RequestInput(
        flow="test-admin", target="admins", duration=timedelta(seconds=seconds), reason="fix"
    )
    with db.session() as session:
        return lifecycle.submit(
            session=session, audit=audit, flow=AS_ASKED, requester_id=REQUESTER, ask=ask
        )


def _decide(
    db: Database,
    audit: AuditLog,
    request: AccessRequest,
    flow: Flow,
    who: str = APPROVER,
    duration: timedelta | None = None,
) -> lifecycle.DecisionOutcome:
    with db.session() as session:
        return lifecycle.decide(
            session=session,
            audit=audit,
            flow=flow,
            request_id=request.id,
            decider_id=who,
            verdict=allow("an approver"),
            decision=Decision.APPROVE,
            duration=duration,
        )


def _events(db: Database, request: AccessRequest) -> list[AuditEvent]:
    with db.session() as session:
        return list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.request_id == request.id)  # type: ignore[arg-type]
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            ).scalars()
        )


def _proof(db: Database, audit: AuditLog, request: AccessRequest, flow: Flow) -> str | None:
    with db.session() as session:
        row = session.get(AccessRequest, request.id)
        assert row is not None
        return proof.decision_problem(session=session, audit=audit, flow=flow, request=row)


def test_a_stale_card_approves_at_most_what_the_flow_allows_now(
    database: Database, audit: AuditLog
) -> None:
    request = _submit(database, audit)
    outcome = _decide(database, audit, request, LOWERED)
    assert outcome.won and outcome.request.duration == 20 * M
    approved = _events(database, request)[-1]
    assert approved.event == "approved" and approved.details["approved_seconds"] == 1200
    assert approved.details["clamped"].startswith("Shortened from 1h to 20m")
    assert _proof(database, audit, request, LOWERED) is None


def test_forged_approve_for_zero_or_a_length_the_flow_lacks_is_refused_and_audited(
    database: Database, audit: AuditLog
) -> None:
    flow = make_flow(durations=(10 * M, 20 * M, HOUR), max_duration=HOUR, approvals_required=2)
    request = _submit(database, audit)
    first = _decide(database, audit, request, flow, duration=10 * M)
    assert first.recorded and first.request.approved_seconds == 600
    for forged in (timedelta(0), 7 * M, 2 * HOUR):
        refused = _decide(database, audit, request, flow, who=SECOND_APPROVER, duration=forged)
        assert refused.refusal and not refused.won
        last = _events(database, request)[-1]
        assert last.event == "approve_refused" and last.actor == SECOND_APPROVER
        assert last.details["chosen_seconds"] == int(forged.total_seconds())
        assert last.details["reason"] == refused.refusal
    # The other approver's shorter choice stands: a plain or longer approval keeps it.
    second = _decide(database, audit, request, flow, who=SECOND_APPROVER, duration=20 * M)
    assert second.won and second.request.status == S.APPROVED
    assert second.request.duration == 10 * M
    assert _proof(database, audit, request, flow) is None


def test_the_worker_clamps_after_the_claim_with_a_keyed_event_the_proof_accepts(
    database: Database, audit: AuditLog
) -> None:
    request = _submit(database, audit)
    assert _decide(database, audit, request, AS_ASKED).won
    with database.session() as session:
        row = session.get(AccessRequest, request.id)
        assert row is not None
        assert clamp_to_flow(session, audit, LOWERED, row) is None
        assert clamp_to_flow(session, audit, LOWERED, row) is None  # a retry clamps no further
    assert _proof(database, audit, request, LOWERED) is None
    clamped = [e for e in _events(database, request) if e.event == "duration_clamped"]
    assert len(clamped) == 1
    assert clamped[0].details["approved_seconds"] == 1200
    assert clamped[0].details["from_seconds"] == 3600
    # A row edited shorter (or longer) without a keyed event is still refused.
    with database.session() as session:
        row = session.get(AccessRequest, request.id)
        assert row is not None
        row.approved_seconds = 600
    assert _proof(database, audit, request, LOWERED) == (
        "the approved duration differs from the audit trail"
    )


def test_the_worker_refuses_what_the_flow_no_longer_allows_at_all(
    database: Database, audit: AuditLog
) -> None:
    request = _submit(database, audit, seconds=600)
    assert _decide(database, audit, request, AS_ASKED).won
    only_long = make_flow(durations=(20 * M,), max_duration=20 * M)
    with database.session() as session:
        row = session.get(AccessRequest, request.id)
        assert row is not None
        problem = clamp_to_flow(session, audit, only_long, row)
    assert problem is not None and "no longer allows 10m or less" in problem


def test_a_break_glass_draft_is_the_clickers_used_once_and_fresh(database: Database) -> None:
    reason = "Пожар в проде: " + "ж" * 865
    ask = RequestInput(flow="test-admin", target="admins", duration=HOUR, reason=reason)
    now = utcnow()
    with database.session() as session:
        draft_id = str(save_draft(session=session, user_id=REQUESTER, ask=ask, now=now).id)
        stale_id = str(
            save_draft(session=session, user_id=REQUESTER, ask=ask, now=now - DRAFT_TTL - M).id
        )
    with database.session() as session:
        other = take_draft(session=session, draft_id=draft_id, user_id=APPROVER, now=now)
        stale = take_draft(session=session, draft_id=stale_id, user_id=REQUESTER, now=now)
        garbage = take_draft(session=session, draft_id="{'flow'}", user_id=REQUESTER, now=now)
    assert isinstance(other, str) and "not yours" in other
    assert isinstance(stale, str) and "too old" in stale
    assert isinstance(garbage, str)
    with database.session() as session:
        mine = take_draft(session=session, draft_id=draft_id, user_id=REQUESTER, now=now)
    assert mine == ask and isinstance(mine, RequestInput) and mine.reason == reason
    with database.session() as session:
        again = take_draft(session=session, draft_id=draft_id, user_id=REQUESTER, now=now)
        left = session.execute(select(RequestDraft)).scalars().all()
    assert isinstance(again, str) and "already used" in again
    assert left == []
