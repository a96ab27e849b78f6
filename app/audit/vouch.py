"""Rows trusted only as far as the keyed trail vouches for them: a passkey, an identity
link, a service client. Each row names the event that made it (`audit_seq`); the row
counts only when that event is authentic, of the kind that makes such rows, about the same
subject and with the same details, and (for what can be undone) when no later authentic
event undid it. A row an insider wrote or edited without the key is then nobody's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from app.audit.chain import AuditLog
from app.models import AuditEvent


def vouching_event(
    session: Session,
    audit: AuditLog,
    seq: int,
    *,
    event: str,
    subject: str,
    details: Mapping[str, Any],
) -> AuditEvent | None:
    """The keyed `event` at `seq` when it vouches for a row with these `details`."""
    found = session.get(AuditEvent, seq)
    if (
        found is None
        or found.event != event
        or found.subject != subject
        or not audit.authentic(found)
        or any(found.details.get(k) != v for k, v in details.items())
    ):
        return None
    return found


def undone_after(
    session: Session, audit: AuditLog, seq: int, *, event: str, subject: str
) -> AuditEvent | None:
    """The first authentic `event` about `subject` after `seq` (an unlink, a revocation),
    whatever the row says now."""
    later = session.execute(
        select(AuditEvent)
        .where(
            AuditEvent.event == event,  # type: ignore[arg-type]
            AuditEvent.subject == subject,  # type: ignore[arg-type]
            AuditEvent.seq > seq,  # type: ignore[operator]
        )
        .order_by(AuditEvent.seq)  # type: ignore[arg-type]
    ).scalars()
    return next((e for e in later if audit.authentic(e)), None)
