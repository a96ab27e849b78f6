"""Read-only questions about requests and grants, asked by the state machine, the sweep
and the messages. Nothing here changes state."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, null, or_, select
from sqlmodel import Session

from app.audit.chain import READS
from app.models import HOLDING_STATUSES, AccessRequest, Approval, AuditEvent, Grant, RequestStatus

S = RequestStatus

# The end of a grant not yet ended (NULL once it ended): the key of the expression index
# ix_grant_open_expires_at (migration 0009). Every question about live or due grants asks
# a range of it, so the database reads the open grants in that range, not the ended
# history; written as in the index (app.models.OPEN_END_SQL) for the database to match it.
open_end: ColumnElement[datetime] = case(
    (Grant.ended_at.is_(None), Grant.expires_at),  # type: ignore[union-attr]
    else_=null(),
)


def _request_is(*statuses: RequestStatus) -> ColumnElement[bool]:
    """The grant's request is in one of these states.

    A correlated EXISTS rather than a join, so that every database walks the few open
    grants in the time range first and looks each request up by its key; with a join,
    SQLite (no statistics) would start from every active request instead.
    """
    return exists().where(
        AccessRequest.id == Grant.request_id,  # type: ignore[arg-type]
        AccessRequest.status.in_(statuses),  # type: ignore[attr-defined]
    )


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
            # Only these names: the transaction's other new events may wait to be chained.
            .execution_options(**{READS: names})
        ).scalars()
    )


def covering_grants(session: Session, grant: Grant, now: datetime) -> list[Grant]:
    """Other live grants giving the same principal the same resource (by any flow).

    Ending one grant must not take away access another still covers.
    """
    return [
        g
        for g in live_grants(
            session, grant.provider, grant.resource or grant.target, grant.principal, now
        )
        if g.id != grant.id
    ]


def _live_access(provider: str, resource: str, principal: str, now: datetime) -> tuple[Any, ...]:
    """The conditions of a live grant of one access (with AccessRequest joined)."""
    return (
        Grant.provider == provider,  # type: ignore[arg-type]
        Grant.resource == resource,  # type: ignore[arg-type]
        Grant.principal == principal,  # type: ignore[arg-type]
        AccessRequest.status == S.ACTIVE,  # type: ignore[arg-type]
        Grant.expires_at > now,  # type: ignore[arg-type]
    )


def live_grants(
    session: Session, provider: str, resource: str, principal: str, now: datetime
) -> list[Grant]:
    """The live grants of one access: this principal, this resource at this provider."""
    rows = session.execute(
        select(Grant)
        .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
        .where(*_live_access(provider, resource, principal, now))
    )
    return list(rows.scalars().all())


def latest_live_end(
    session: Session, provider: str, resource: str, principal: str, now: datetime
) -> datetime | None:
    """The latest end among live grants of this access (overlaps share a native expiry)."""
    return session.execute(
        select(func.max(Grant.expires_at))
        .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
        .where(*_live_access(provider, resource, principal, now))
    ).scalar_one_or_none()


def due_for_expiry(session: Session, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Active grants past their end, from the DB alone (whatever happened to the broker)."""
    return list(
        session.execute(
            select(Grant.request_id)
            .where(open_end <= now, _request_is(S.ACTIVE))
            .order_by(open_end)
            .limit(limit)
        ).scalars()
    )


def overdue(session: Session, now: datetime) -> tuple[int, datetime | None]:
    """How many grants are past their end and not yet revoked, and the oldest such end.

    The same question for /healthz and the metrics: a range of the open-grant index, each
    grant's request looked up by its key, however many grants are live or ended.
    """
    count, oldest = session.execute(
        select(func.count(), func.min(open_end)).where(
            open_end < now, _request_is(*HOLDING_STATUSES)
        )
    ).one()
    return int(count), oldest


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


def unnoticed_ending(
    session: Session, now: datetime, before: datetime, limit: int = 1000
) -> list[tuple[Grant, str]]:
    """Active grants ending in (now, before] not yet warned about their current end, with
    their flow, soonest first."""
    # The flow by key lookup, not a join, for the same reason as _request_is.
    flow = (
        select(AccessRequest.flow)
        .where(AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
        .scalar_subquery()
    )
    rows = session.execute(
        select(Grant, flow)
        .where(
            open_end > now,
            open_end <= before,
            _request_is(S.ACTIVE),
            # An extension moves expires_at past the end the last notice was for.
            or_(Grant.notice_sent_for.is_(None), Grant.notice_sent_for != Grant.expires_at),  # type: ignore[union-attr,arg-type]
        )
        .order_by(open_end)
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def recently_ended(session: Session, since: datetime, limit: int = 2000) -> list[Grant]:
    """Grants that ended (expired or revoked) since a time, newest first (ix_grant_ended_at)."""
    return list(
        session.execute(
            select(Grant)
            .where(
                Grant.ended_at >= since,  # type: ignore[arg-type,operator]
                _request_is(S.EXPIRED, S.REVOKED),
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
        .where(open_end >= start, open_end < end, _request_is(S.ACTIVE))
        .order_by(open_end)
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
