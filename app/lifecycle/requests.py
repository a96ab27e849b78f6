"""A request before access: submitted, decided (by people, rules or break-glass), cancelled,
reminded, timed out."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session

from app.audit import AuditLog
from app.checkouts import told_queued
from app.flows.policy import (
    RequestInput,
    Verdict,
    approve_for_less_problem,
    clamp_duration,
    quorum,
)
from app.flows.schema import Flow
from app.lifecycle.core import (
    DecisionOutcome,
    lock_request,
    record,
    transition,
)
from app.metrics import process as metrics
from app.models import AccessRequest, Approval, Decision, RequestStatus
from app.queries import approvals_of, events_of

S = RequestStatus


def _counted(request: AccessRequest | None, outcome: str) -> AccessRequest | None:
    """Count a transition this caller won (latchkey_requests_total); pass it through."""
    if request is not None:
        metrics.request_outcome(request.flow, outcome)
    return request


def submit(
    *,
    session: Session,
    audit: AuditLog,
    flow: Flow,
    requester_id: str,
    ask: RequestInput,
    requested_by: str | None = None,
) -> AccessRequest:
    """Store a request for `requester_id`, filed by them or, on behalf, by `requested_by`."""
    request = AccessRequest(
        flow=flow.name,
        target=ask.target,
        requester_id=requester_id,
        requested_by=requested_by,
        reason=ask.reason.strip(),
        requested_seconds=int(ask.duration.total_seconds()),
    )
    session.add(request)
    session.flush()
    details: dict[str, Any] = {
        "duration_seconds": request.requested_seconds,
        "reason": request.reason,
    }
    if requested_by is not None:
        details["on_behalf_of"] = requester_id
    audit.append(
        session,
        event="requested",
        actor=requested_by or requester_id,
        request_id=request.id,
        flow=flow.name,
        target=ask.target,
        subject=requester_id,
        details=details,
    )
    metrics.request_outcome(flow.name, "submitted")
    return request


PASSKEY_NEEDED = "This flow needs each approval confirmed with a passkey."


def decide(
    *,
    session: Session,
    audit: AuditLog,
    flow: Flow,
    request_id: uuid.UUID,
    decider_id: str,
    verdict: Verdict,
    decision: Decision,
    reason: str = "",
    duration: timedelta | None = None,
    passkey: str | None = None,
) -> DecisionOutcome:
    """Record one approver's approve or deny.

    `passkey`: the credential id that confirmed this approval (app.passkeys); a flow with
    approval_assurance="passkey" counts no approval without one.

    A refused verdict is audited and changes nothing else. One deny ends the request;
    approvals accumulate until the flow's quorum of distinct approvers is reached. An
    approver may shorten the duration to one of the flow's shorter durations (the shortest
    proposal wins), never lengthen it; what is approved is clamped to the flow as it is now
    (clamp_duration), and a choice the flow does not offer is refused and audited.
    """
    reason = reason.strip()
    request = lock_request(session, request_id)
    if request is None:
        return DecisionOutcome(None, False, "That request no longer exists.")
    if not verdict.allowed:
        # Refusals are part of the record: who tried to decide what they may not.
        record(
            session,
            audit,
            request,
            f"{decision.value}_refused",
            decider_id,
            {"reason": verdict.reason},
        )
        return DecisionOutcome(request, False, verdict.reason)
    if request.status != S.PENDING:
        return DecisionOutcome(request, False, f"This request is already {request.status.value}.")
    if decision is Decision.APPROVE and flow.approval_assurance == "passkey" and not passkey:
        return DecisionOutcome(request, False, PASSKEY_NEEDED)
    if request.requested_by == decider_id:
        # Whoever filed a request for someone else is not a second pair of eyes on it.
        why = f"You asked for this access for <@{request.requester_id}>; someone else must decide."
        record(session, audit, request, f"{decision.value}_refused", decider_id, {"reason": why})
        return DecisionOutcome(request, False, why)
    earlier = approvals_of(session, request.id)
    if any(a.approver_id == decider_id for a in earlier):
        return DecisionOutcome(request, False, "You have already decided on this request.")
    details: dict[str, Any] = {"why_decider": verdict.reason}
    if passkey:
        details["passkey"] = passkey
    if reason:
        details["reason"] = reason
    if decision is Decision.APPROVE:
        # What is approved is clamped to the flow as it is now: a card posted before its
        # max_duration was lowered must not grant the old, longer time.
        asked = timedelta(seconds=request.requested_seconds)
        problem = approve_for_less_problem(flow, asked, duration) if duration is not None else None
        proposed = request.duration if duration is None else min(duration, request.duration)
        allowed, note = clamp_duration(flow, proposed) if problem is None else (None, problem)
        if allowed is None:
            chosen = {} if duration is None else {"chosen_seconds": int(duration.total_seconds())}
            record(
                session, audit, request, "approve_refused", decider_id, {"reason": note, **chosen}
            )
            return DecisionOutcome(request, False, note)
        if allowed < request.duration:
            # The shortest approver choice (or clamp) wins; a longer one changes nothing.
            request.approved_seconds = int(allowed.total_seconds())
            details["approved_seconds"] = request.approved_seconds
            session.add(request)
        if note:
            details["clamped"] = note
    session.add(
        Approval(
            request_id=request.id, approver_id=decider_id, decision=decision, reason=reason or None
        )
    )
    session.flush()
    if decision is Decision.DENY:
        moved = transition(
            session,
            audit,
            request.id,
            expected=S.PENDING,
            new=S.DENIED,
            event="denied",
            actor=decider_id,
            details=details,
        )
        _counted(moved, "denied")
        return DecisionOutcome(moved or request, moved is not None)

    counted = quorum(
        flow,
        requester_id=request.requester_id,
        approver_ids=[a.approver_id for a in earlier if a.decision == Decision.APPROVE]
        + [decider_id],
    )
    details["quorum"] = counted.progress
    if not counted.reached:
        record(session, audit, request, "approval_recorded", decider_id, details)
        return DecisionOutcome(request, False, None, counted)
    moved = transition(
        session,
        audit,
        request.id,
        expected=S.PENDING,
        new=S.APPROVED,
        event="approved",
        actor=decider_id,
        details=details,
    )
    _counted(moved, "approved")
    return DecisionOutcome(moved or request, moved is not None, None, counted)


def cancel(
    *, session: Session, audit: AuditLog, request_id: uuid.UUID, actor: str
) -> DecisionOutcome:
    """The requester withdraws their own pending request, or leaves a shared account's
    queue (approved, waiting its turn: nothing was granted yet)."""
    request = lock_request(session, request_id)
    if request is None:
        return DecisionOutcome(None, False, "That request no longer exists.")
    if request.requester_id != actor:
        record(session, audit, request, "cancel_refused", actor, {"reason": "not the requester"})
        return DecisionOutcome(request, False, "Only the requester can cancel a request.")
    queued = request.status == S.APPROVED and told_queued(session, request_id)
    moved = transition(
        session,
        audit,
        request_id,
        expected=S.APPROVED if queued else S.PENDING,
        new=S.CANCELLED,
        event="cancelled",
        actor=actor,
        details={"left_queue": True} if queued else None,
    )
    _counted(moved, "cancelled")
    if moved is None:
        return DecisionOutcome(request, False, f"This request is already {request.status.value}.")
    return DecisionOutcome(moved, True)


def time_out(*, session: Session, audit: AuditLog, request_id: uuid.UUID, after: timedelta) -> bool:
    moved = transition(
        session,
        audit,
        request_id,
        expected=S.PENDING,
        new=S.TIMED_OUT,
        event="timed_out",
        actor="latchkey",
        details={"pending_timeout_seconds": int(after.total_seconds())},
    )
    return _counted(moved, "timed_out") is not None


# The audit event of one escalation step taken (its people, whether they may approve).
ESCALATED = "escalated"


def mark_reminded(
    *, session: Session, audit: AuditLog, request_id: uuid.UUID, now: datetime
) -> bool:
    """Claim the one reminder of a pending request (compare-and-set on reminded_at)."""
    result = session.execute(
        update(AccessRequest)
        .where(
            AccessRequest.id == request_id,  # type: ignore[arg-type]
            AccessRequest.status == S.PENDING,  # type: ignore[arg-type]
            AccessRequest.reminded_at.is_(None),  # type: ignore[union-attr]
        )
        .values(reminded_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    request = session.get(AccessRequest, request_id, populate_existing=True)
    assert request is not None
    record(session, audit, request, "approvers_reminded", "latchkey", {})
    return True


def escalate(
    *, session: Session, audit: AuditLog, request_id: uuid.UUID, step: int, details: dict[str, Any]
) -> bool:
    """Claim escalation step `step` (counted from 0) of a pending request: compare-and-set
    on escalated_steps, so each step is taken once however many sweeps see it due."""
    result = session.execute(
        update(AccessRequest)
        .where(
            AccessRequest.id == request_id,  # type: ignore[arg-type]
            AccessRequest.status == S.PENDING,  # type: ignore[arg-type]
            AccessRequest.escalated_steps == step,  # type: ignore[arg-type]
        )
        .values(escalated_steps=step + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    request = session.get(AccessRequest, request_id, populate_existing=True)
    assert request is not None
    record(session, audit, request, ESCALATED, "latchkey", {"step": step + 1, **details})
    return True


def auto_decide(
    *, session: Session, audit: AuditLog, request_id: uuid.UUID, approve: bool, reason: str
) -> AccessRequest | None:
    """pending -> approved/denied by a rule or hook, with the reason in the audit trail."""
    new, event = (S.APPROVED, "auto_approved") if approve else (S.DENIED, "auto_denied")
    moved = transition(
        session,
        audit,
        request_id,
        expected=S.PENDING,
        new=new,
        event=event,
        actor="latchkey",
        details={"reason": reason},
    )
    return _counted(moved, event)


def audit_failed_lookup(
    *,
    session: Session,
    audit: AuditLog,
    request_id: uuid.UUID,
    event: str,
    details: dict[str, str],
) -> None:
    """A flow's hook or an on-call service failed while deciding about this request, and
    Latchkey fell back to people: the trail says what was asked and why it failed."""
    request = session.get(AccessRequest, request_id)
    if request is not None:
        record(session, audit, request, event, "latchkey", details)


BREAK_GLASS_REVIEWS = ("break_glass_acknowledged", "break_glass_flagged")


def break_glass(
    *,
    session: Session,
    audit: AuditLog,
    request_id: uuid.UUID,
    actor: str,
    passkey: str | None = None,
) -> AccessRequest | None:
    """pending -> approved by the requester's own emergency activation, loudly recorded.
    `passkey`: the credential that confirmed it (a flow's requester_assurance)."""
    details: dict[str, Any] = {"review": "required"}
    if passkey:
        details["passkey"] = passkey
    moved = transition(
        session,
        audit,
        request_id,
        expected=S.PENDING,
        new=S.APPROVED,
        event="break_glass",
        actor=actor,
        details=details,
    )
    return _counted(moved, "break_glass")


def review_break_glass(
    *,
    session: Session,
    audit: AuditLog,
    request_id: uuid.UUID,
    reviewer_id: str,
    verdict: Verdict,
    flagged: bool,
) -> DecisionOutcome:
    """An approver's after-the-fact review of a break-glass use: acknowledged or flagged, once."""
    request = lock_request(session, request_id)
    if request is None:
        return DecisionOutcome(None, False, "That request no longer exists.")
    if not events_of(session, request_id, ("break_glass",)):
        return DecisionOutcome(request, False, "This request was not a break-glass activation.")
    if not verdict.allowed:
        record(session, audit, request, "review_refused", reviewer_id, {"reason": verdict.reason})
        return DecisionOutcome(request, False, verdict.reason)
    if events_of(session, request_id, BREAK_GLASS_REVIEWS):
        return DecisionOutcome(request, False, "This break-glass use was already reviewed.")
    record(session, audit, request, BREAK_GLASS_REVIEWS[1 if flagged else 0], reviewer_id, {})
    return DecisionOutcome(request, True)
