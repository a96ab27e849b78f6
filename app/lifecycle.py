"""The state machine: every transition of an AccessRequest, each compare-and-set and audited.

Functions take an explicit session and write the audit event in that same transaction;
the caller's `db.session()` block commits both or neither.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlmodel import Session

from app.audit import AuditLog
from app.db import utcnow
from app.flows.policy import (
    Quorum,
    RequestInput,
    Verdict,
    approve_for_less_problem,
    clamp_duration,
    quorum,
)
from app.flows.schema import Flow
from app.models import AccessRequest, Approval, Decision, Grant, RequestStatus
from app.queries import approvals_of, events_of, grant_of

S = RequestStatus


class EndCause(StrEnum):
    EXPIRED = "expired"
    RELEASED = "released"
    REVOKED = "revoked"


def transition(
    session: Session,
    audit: AuditLog,
    request_id: uuid.UUID,
    *,
    expected: RequestStatus,
    new: RequestStatus,
    event: str,
    actor: str,
    details: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    lease_owner: str | None = None,
) -> AccessRequest | None:
    """Move a request from `expected` to `new` if, and only if, it is still in `expected`
    (and, with `lease_owner`, still claimed by that owner).

    Returns the updated request when this caller won, None when someone else moved it
    first. The audit event is written only by the winner, in the same transaction.
    """
    where = [AccessRequest.id == request_id, AccessRequest.status == expected]
    if lease_owner is not None:
        where.append(AccessRequest.lease_owner == lease_owner)
    result = session.execute(
        update(AccessRequest)
        .where(*where)  # type: ignore[arg-type]
        .values(status=new, updated_at=utcnow(), **(values or {}))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    request = session.get(AccessRequest, request_id, populate_existing=True)
    assert request is not None
    audit.append(
        session,
        event=event,
        actor=actor,
        request_id=request.id,
        flow=request.flow,
        target=request.target,
        subject=request.requester_id,
        details={"from": expected.value, "to": new.value, **(details or {})},
    )
    return request


def lock_request(session: Session, request_id: uuid.UUID) -> AccessRequest | None:
    """Read a request holding its row lock, so deciders of one request go one at a time.

    Quorum counting reads other approvals; without the lock two approvers on PostgreSQL
    could each count only themselves. (SQLite transactions are already serialised.)
    """
    return session.execute(
        select(AccessRequest).where(AccessRequest.id == request_id).with_for_update()  # type: ignore[arg-type]
    ).scalar_one_or_none()


def submit(
    *, session: Session, audit: AuditLog, flow: Flow, requester_id: str, ask: RequestInput
) -> AccessRequest:
    request = AccessRequest(
        flow=flow.name,
        target=ask.target,
        requester_id=requester_id,
        reason=ask.reason.strip(),
        requested_seconds=int(ask.duration.total_seconds()),
    )
    session.add(request)
    session.flush()
    audit.append(
        session,
        event="requested",
        actor=requester_id,
        request_id=request.id,
        flow=flow.name,
        target=ask.target,
        subject=requester_id,
        details={"duration_seconds": request.requested_seconds, "reason": request.reason},
    )
    return request


@dataclass(frozen=True)
class DecisionOutcome:
    """What a decider's click did: moved the request (won), recorded an approval toward the
    quorum, or why it did nothing (refusal)."""

    request: AccessRequest | None
    won: bool
    refusal: str | None = None
    quorum: Quorum | None = None

    @property
    def recorded(self) -> bool:
        return self.refusal is None and not self.won


def record(
    session: Session,
    audit: AuditLog,
    request: AccessRequest,
    event: str,
    actor: str,
    details: dict[str, Any],
) -> None:
    audit.append(
        session,
        event=event,
        actor=actor,
        request_id=request.id,
        flow=request.flow,
        target=request.target,
        subject=request.requester_id,
        details=details,
    )


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
) -> DecisionOutcome:
    """Record one approver's approve or deny.

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
    earlier = approvals_of(session, request.id)
    if any(a.approver_id == decider_id for a in earlier):
        return DecisionOutcome(request, False, "You have already decided on this request.")
    details: dict[str, Any] = {"why_decider": verdict.reason}
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
    return DecisionOutcome(moved or request, moved is not None, None, counted)


def claim_grant(
    *,
    session: Session,
    audit: AuditLog,
    request_id: uuid.UUID,
    owner: str,
    lease: timedelta,
    now: datetime | None = None,
) -> AccessRequest | None:
    """approved -> granting: claim the one provider call, with a lease.

    Also takes over a claim whose lease ran out (its worker died mid-call) and renews the
    caller's own claim (a retry of the same task). While the lease runs nobody else may
    call the provider for this request; whoever loses after all takes the access back.
    """
    now = now or utcnow()
    result = session.execute(
        update(AccessRequest)
        .where(
            AccessRequest.id == request_id,  # type: ignore[arg-type]
            or_(
                AccessRequest.status == S.APPROVED,  # type: ignore[arg-type]
                and_(
                    AccessRequest.status == S.GRANTING,  # type: ignore[arg-type]
                    or_(
                        AccessRequest.lease_until < now,  # type: ignore[arg-type,operator]
                        AccessRequest.lease_owner == owner,  # type: ignore[arg-type]
                    ),
                ),
            ),
        )
        .values(status=S.GRANTING, lease_owner=owner, lease_until=now + lease, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    request = session.get(AccessRequest, request_id, populate_existing=True)
    assert request is not None
    record(
        session,
        audit,
        request,
        "granting",
        "latchkey",
        {"lease_owner": owner, "lease_until": (now + lease).isoformat()},
    )
    return request


def grant_end(start: datetime, duration: timedelta) -> datetime:
    """The one end of a grant, to the whole second: the same value goes to the provider's
    own expiry, the DB and the audit trail (providers keep whole seconds). A start taken to
    the whole second keeps the grant exactly as long as approved."""
    return (start + duration).replace(microsecond=0)


def activate(
    *,
    session: Session,
    audit: AuditLog,
    request_id: uuid.UUID,
    provider: str,
    principal: str,
    details: dict[str, Any],
    expires_at: datetime,
    lease_owner: str,
    now: datetime | None = None,
    resource: str | None = None,
) -> Grant | None:
    """granting -> active for the claim's holder, with the Grant row and its audit event in
    one transaction. `expires_at` is the end already handed to the provider."""
    now = now or utcnow()
    request = session.get(AccessRequest, request_id)
    if request is None:
        return None
    won = transition(
        session,
        audit,
        request_id,
        expected=S.GRANTING,
        new=S.ACTIVE,
        event="granted",
        actor="latchkey",
        details={
            "principal": principal,
            "provider": provider,
            "resource": resource or request.target,
            "expires_at": expires_at.isoformat(),
            **details,
        },
        values={"lease_owner": None, "lease_until": None},
        lease_owner=lease_owner,
    )
    if won is None:
        return None
    grant = Grant(
        request_id=request_id,
        provider=provider,
        target=request.target,
        resource=resource or request.target,
        principal=principal,
        granted_at=now,
        expires_at=expires_at,
        details=details,
    )
    session.add(grant)
    session.flush()
    return grant


def fail(
    *,
    session: Session,
    audit: AuditLog,
    request_id: uuid.UUID,
    error: str,
    lease_owner: str | None = None,
) -> AccessRequest | None:
    """granting -> failed for the claim's holder (or approved -> failed before any claim)."""
    expected = S.APPROVED if lease_owner is None else S.GRANTING
    return transition(
        session,
        audit,
        request_id,
        expected=expected,
        new=S.FAILED,
        event="grant_failed",
        actor="latchkey",
        details={"error": error},
        values={"failure": error, "lease_owner": None, "lease_until": None},
        lease_owner=lease_owner,
    )


def begin_revoke(
    *,
    session: Session,
    audit: AuditLog,
    request_id: uuid.UUID,
    cause: EndCause,
    actor: str,
    reason: str = "",
    now: datetime | None = None,
) -> Grant | None:
    """active -> revoking. An expiry that is not yet due is a no-op (the grant was extended)."""
    now = now or utcnow()
    grant = grant_of(session, request_id)
    if grant is None:
        return None
    if cause is EndCause.EXPIRED and grant.expires_at > now:
        return None
    won = transition(
        session,
        audit,
        request_id,
        expected=S.ACTIVE,
        new=S.REVOKING,
        event="revoking",
        actor=actor,
        details={"cause": cause.value, "reason": reason},
    )
    if won is None:
        return None
    grant.end_cause, grant.ended_by, grant.end_reason = cause.value, actor, reason or None
    session.add(grant)
    return grant


def retry_revoke(*, session: Session, audit: AuditLog, request_id: uuid.UUID) -> bool:
    """revoke_failed -> revoking, for the sweep's next attempt."""
    return (
        transition(
            session,
            audit,
            request_id,
            expected=S.REVOKE_FAILED,
            new=S.REVOKING,
            event="revoke_retry",
            actor="latchkey",
        )
        is not None
    )


def finish_revoke(
    *,
    session: Session,
    audit: AuditLog,
    request_id: uuid.UUID,
    details: dict[str, Any],
    now: datetime | None = None,
) -> Grant | None:
    """revoking -> expired (ran out) or revoked (released or taken away)."""
    grant = grant_of(session, request_id)
    if grant is None:
        return None
    final = S.EXPIRED if grant.end_cause == EndCause.EXPIRED.value else S.REVOKED
    won = transition(
        session,
        audit,
        request_id,
        expected=S.REVOKING,
        new=final,
        event=final.value,
        actor=grant.ended_by or "latchkey",
        details={"cause": grant.end_cause, "principal": grant.principal, **details},
    )
    if won is None:
        return None
    grant.ended_at = now or utcnow()
    session.add(grant)
    return grant


def revoke_failed(*, session: Session, audit: AuditLog, request_id: uuid.UUID, error: str) -> bool:
    return (
        transition(
            session,
            audit,
            request_id,
            expected=S.REVOKING,
            new=S.REVOKE_FAILED,
            event="revoke_failed",
            actor="latchkey",
            details={"error": error},
            values={"failure": error},
        )
        is not None
    )


def cancel(
    *, session: Session, audit: AuditLog, request_id: uuid.UUID, actor: str
) -> DecisionOutcome:
    """The requester withdraws their own pending request."""
    request = lock_request(session, request_id)
    if request is None:
        return DecisionOutcome(None, False, "That request no longer exists.")
    if request.requester_id != actor:
        record(session, audit, request, "cancel_refused", actor, {"reason": "not the requester"})
        return DecisionOutcome(request, False, "Only the requester can cancel a request.")
    moved = transition(
        session,
        audit,
        request_id,
        expected=S.PENDING,
        new=S.CANCELLED,
        event="cancelled",
        actor=actor,
    )
    if moved is None:
        return DecisionOutcome(request, False, f"This request is already {request.status.value}.")
    return DecisionOutcome(moved, True)


def time_out(*, session: Session, audit: AuditLog, request_id: uuid.UUID, after: timedelta) -> bool:
    return (
        transition(
            session,
            audit,
            request_id,
            expected=S.PENDING,
            new=S.TIMED_OUT,
            event="timed_out",
            actor="latchkey",
            details={"pending_timeout_seconds": int(after.total_seconds())},
        )
        is not None
    )


def mark_noticed(*, session: Session, audit: AuditLog, grant: Grant, lead: timedelta) -> bool:
    """Claim the expiry notice for the grant's current end (once per end time: an
    extension moves the end, and the holder is warned again before the new one)."""
    result = session.execute(
        update(Grant)
        .where(
            Grant.id == grant.id,  # type: ignore[arg-type]
            Grant.expires_at == grant.expires_at,  # type: ignore[arg-type]
            or_(Grant.notice_sent_for.is_(None), Grant.notice_sent_for != grant.expires_at),  # type: ignore[union-attr]
        )
        .values(notice_sent_for=grant.expires_at)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    request = session.get(AccessRequest, grant.request_id)
    assert request is not None
    record(
        session,
        audit,
        request,
        "expiry_notice_sent",
        "latchkey",
        {"expires_at": grant.expires_at.isoformat(), "lead_seconds": int(lead.total_seconds())},
    )
    return True


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


def auto_decide(
    *, session: Session, audit: AuditLog, request_id: uuid.UUID, approve: bool, reason: str
) -> AccessRequest | None:
    """pending -> approved/denied by a rule or hook, with the reason in the audit trail."""
    new, event = (S.APPROVED, "auto_approved") if approve else (S.DENIED, "auto_denied")
    return transition(
        session,
        audit,
        request_id,
        expected=S.PENDING,
        new=new,
        event=event,
        actor="latchkey",
        details={"reason": reason},
    )


def audit_hook_failure(
    *, session: Session, audit: AuditLog, request_id: uuid.UUID, hook: str, error: str
) -> None:
    request = session.get(AccessRequest, request_id)
    if request is not None:
        record(session, audit, request, "hook_failed", "latchkey", {"hook": hook, "error": error})


BREAK_GLASS_REVIEWS = ("break_glass_acknowledged", "break_glass_flagged")


def break_glass(
    *, session: Session, audit: AuditLog, request_id: uuid.UUID, actor: str
) -> AccessRequest | None:
    """pending -> approved by the requester's own emergency activation, loudly recorded."""
    return transition(
        session,
        audit,
        request_id,
        expected=S.PENDING,
        new=S.APPROVED,
        event="break_glass",
        actor=actor,
        details={"review": "required"},
    )


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
