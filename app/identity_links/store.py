"""Identity links, trusted only as far as the keyed audit trail vouches for them.

Linking writes `identity_linked` (issuer, subject, email) in the transaction that stores
the row, and the row names that event; unlinking (by the person or an admin) writes
`identity_unlinked`. A row an insider writes or edits (another email), or one restored
after an unlink, is not vouched for and counts as no link."""

from __future__ import annotations

from sqlmodel import Session

from app.audit import AuditLog
from app.audit.chain import settle
from app.audit.vouch import undone_after, vouching_event
from app.models import IdentityLink

LINKED = "identity_linked"
UNLINKED = "identity_unlinked"


def link(
    session: Session, audit: AuditLog, *, user_id: str, issuer: str, subject: str, email: str
) -> IdentityLink:
    """Link (or re-link) this Slack user to this verified identity."""
    event = audit.append(
        session,
        event=LINKED,
        actor=user_id,
        subject=user_id,
        details={"issuer": issuer, "oidc_subject": subject, "email": email},
    )
    settle(session)  # the event's seq, for the row to name
    row = session.get(IdentityLink, user_id) or IdentityLink(
        user_id=user_id, issuer=issuer, subject=subject, email=email, audit_seq=event.seq
    )
    row.issuer, row.subject, row.email, row.audit_seq = issuer, subject, email, event.seq
    session.add(row)
    return row


def linked(session: Session, audit: AuditLog, user_id: str) -> IdentityLink | None:
    """This person's link, if the keyed trail vouches for it and no later unlink undid it."""
    row = session.get(IdentityLink, user_id)
    if row is None:
        return None
    made = {"issuer": row.issuer, "oidc_subject": row.subject, "email": row.email}
    if (
        vouching_event(session, audit, row.audit_seq, event=LINKED, subject=user_id, details=made)
        is None
    ):
        return None
    undone = undone_after(session, audit, row.audit_seq, event=UNLINKED, subject=user_id)
    return None if undone is not None else row


def unlink(session: Session, audit: AuditLog, user_id: str, *, actor: str) -> bool:
    """Remove this person's link (they asked, or an admin did); False when there was none."""
    row = session.get(IdentityLink, user_id)
    if row is None:
        return False
    audit.append(
        session,
        event=UNLINKED,
        actor=actor,
        subject=user_id,
        details={"issuer": row.issuer, "oidc_subject": row.subject, "email": row.email},
    )
    session.delete(row)
    return True
