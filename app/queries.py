"""Read-only questions about requests and grants, asked by the state machine, the sweep
and the messages. Nothing here changes state."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session

from app.models import AccessRequest, Approval, AuditEvent, Grant, RequestStatus

S = RequestStatus


def grant_of(session: Session, request_id: uuid.UUID) -> Grant | None:
    return session.execute(
        select(Grant).where(Grant.request_id == request_id)  # type: ignore[arg-type]
    ).scalar_one_or_none()


def approvals_of(session: Session, request_id: uuid.UUID) -> list[Approval]:
    return list(
        session.execute(
            select(Approval).where(Approval.request_id == request_id).order_by(Approval.created_at)  # type: ignore[arg-type]
        ).scalars()
    )


def events_of(session: Session, request_id: uuid.UUID, names: tuple[str, ...]) -> list[AuditEvent]:
    return list(
        session.execute(
            select(AuditEvent)
            .where(AuditEvent.request_id == request_id, AuditEvent.event.in_(names))  # type: ignore[arg-type,attr-defined]
            .order_by(AuditEvent.seq)
        ).scalars()
    )


def covering_grants(session: Session, grant: Grant, now: datetime) -> list[Grant]:
    """Other live grants giving the same principal the same resource (by any flow).

    Ending one grant must not take away access another still covers.
    """
    rows = (
        session.execute(
            select(Grant)
            .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
            .where(
                Grant.id != grant.id,  # type: ignore[arg-type]
                Grant.provider == grant.provider,  # type: ignore[arg-type]
                Grant.resource == (grant.resource or grant.target),  # type: ignore[arg-type]
                Grant.principal == grant.principal,  # type: ignore[arg-type]
                AccessRequest.status == S.ACTIVE,  # type: ignore[arg-type]
                Grant.expires_at > now,  # type: ignore[arg-type]
            )
        )
        .scalars()
        .all()
    )
    return list(rows)


def latest_live_end(
    session: Session, provider: str, resource: str, principal: str, now: datetime
) -> datetime | None:
    """The latest end among live grants of this access (overlaps share a native expiry)."""
    return session.execute(
        select(func.max(Grant.expires_at))
        .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
        .where(
            Grant.provider == provider,  # type: ignore[arg-type]
            Grant.resource == resource,  # type: ignore[arg-type]
            Grant.principal == principal,  # type: ignore[arg-type]
            AccessRequest.status == S.ACTIVE,  # type: ignore[arg-type]
            Grant.expires_at > now,  # type: ignore[arg-type]
        )
    ).scalar_one_or_none()


def due_for_expiry(session: Session, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Active grants past their end, from the DB alone (whatever happened to the broker)."""
    return list(
        session.execute(
            select(Grant.request_id)
            .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
            .where(AccessRequest.status == S.ACTIVE, Grant.expires_at <= now)  # type: ignore[arg-type]
            .order_by(Grant.expires_at)
            .limit(limit)
        ).scalars()
    )


def stuck(
    session: Session, status: RequestStatus, older_than: timedelta, now: datetime
) -> list[uuid.UUID]:
    """Requests left in a working state by a worker that died mid-task."""
    return list(
        session.execute(
            select(AccessRequest.id)
            .where(
                AccessRequest.status == status,  # type: ignore[arg-type]
                AccessRequest.updated_at <= now - older_than,  # type: ignore[arg-type]
            )
            .limit(500)
        ).scalars()
    )


def pending(session: Session, limit: int = 1000) -> list[AccessRequest]:
    return list(
        session.execute(
            select(AccessRequest)
            .where(AccessRequest.status == S.PENDING)
            .order_by(AccessRequest.created_at)
            .limit(limit)  # type: ignore[arg-type]
        ).scalars()
    )


def extensions_of(
    session: Session, request_id: uuid.UUID, statuses: tuple[RequestStatus, ...]
) -> list[AccessRequest]:
    """Extension requests of one grant's request, oldest first, in the given states."""
    return list(
        session.execute(
            select(AccessRequest)
            .where(
                AccessRequest.extends_id == request_id,  # type: ignore[arg-type]
                AccessRequest.status.in_(statuses),  # type: ignore[attr-defined]
            )
            .order_by(AccessRequest.created_at)
        ).scalars()
    )


def active_grants(
    session: Session, now: datetime, *, ending_before: datetime | None = None
) -> list[Grant]:
    """Grants whose request is active and whose end is still ahead (optionally before a time)."""
    query = (
        select(Grant)
        .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
        .where(AccessRequest.status == S.ACTIVE, Grant.expires_at > now)  # type: ignore[arg-type]
    )
    if ending_before is not None:
        query = query.where(Grant.expires_at <= ending_before)  # type: ignore[arg-type]
    return list(session.execute(query.order_by(Grant.expires_at)).scalars())


def recently_ended(session: Session, since: datetime, limit: int = 2000) -> list[Grant]:
    """Grants that ended (expired or revoked) since a time, newest first."""
    return list(
        session.execute(
            select(Grant)
            .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
            .where(
                AccessRequest.status.in_((S.EXPIRED, S.REVOKED)),  # type: ignore[attr-defined]
                Grant.ended_at >= since,  # type: ignore[arg-type,operator]
            )
            .order_by(Grant.ended_at.desc())  # type: ignore[union-attr]
            .limit(limit)
        ).scalars()
    )


def ending_between(
    session: Session, start: datetime, end: datetime, limit: int = 2000
) -> list[tuple[uuid.UUID, datetime]]:
    """Active grants whose end falls in [start, end): the revokes to hand the broker now."""
    rows = session.execute(
        select(Grant.request_id, Grant.expires_at)
        .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
        .where(
            AccessRequest.status == S.ACTIVE,  # type: ignore[arg-type]
            Grant.expires_at >= start,  # type: ignore[arg-type]
            Grant.expires_at < end,  # type: ignore[arg-type]
        )
        .order_by(Grant.expires_at)
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def lapsed_claims(session: Session, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Requests claimed for granting whose lease ran out: their worker died mid-call."""
    return list(
        session.execute(
            select(AccessRequest.id)
            .where(
                AccessRequest.status == S.GRANTING,  # type: ignore[arg-type]
                AccessRequest.lease_until < now,  # type: ignore[arg-type,operator]
            )
            .limit(limit)
        ).scalars()
    )


def cardless(session: Session, made_before: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Pending requests (not extensions) made before a time that still have no card."""
    return list(
        session.execute(
            select(AccessRequest.id)
            .where(
                AccessRequest.status == S.PENDING,  # type: ignore[arg-type]
                AccessRequest.approval_message_ts.is_(None),  # type: ignore[union-attr]
                AccessRequest.created_at <= made_before,  # type: ignore[arg-type]
            )
            .order_by(AccessRequest.created_at)
            .limit(limit)
        ).scalars()
    )
