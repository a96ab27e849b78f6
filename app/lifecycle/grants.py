"""A grant's life: claimed for the provider call, active with its one end, warned, revoked."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session

from app.audit import AuditLog
from app.db import utcnow
from app.lifecycle.core import (
    EndCause,
    record,
    transition,
)
from app.metrics import process as metrics
from app.models import AccessRequest, Grant, RequestStatus
from app.queries import events_of, grant_of

S = RequestStatus
# The events after which a request may be granted (the keyed decisions of proof.py).
DECIDED = ("approved", "auto_approved", "break_glass")


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
    decided = events_of(session, request_id, DECIDED)
    if decided:
        waited = (utcnow() - decided[-1].at).total_seconds()
        metrics.approve_to_access(request.flow, provider, waited)
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
    if final is S.EXPIRED:
        lag = (grant.ended_at - grant.expires_at).total_seconds()
        metrics.revoke_lag(won.flow, grant.provider, lag)
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
