"""Registered passkeys, trusted only as far as the keyed audit trail vouches for them.

Registering writes the `passkey_registered` event (credential id and a hash of the public
key) in the same transaction as the row, and the row names the event. A row an insider
adds or edits (another public key, another owner) fails `vouched`; a passkey removed by a
keyed `passkey_removed` event stays removed whatever the row says."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlmodel import Session

from app.audit import AuditLog
from app.audit.chain import settle
from app.audit.vouch import vouching_event
from app.models import AuditEvent, Passkey

REGISTERED = "passkey_registered"
REMOVED = "passkey_removed"


def key_digest(public_key: str) -> str:
    return hashlib.sha256(public_key.encode()).hexdigest()


def register(
    session: Session,
    audit: AuditLog,
    *,
    user_id: str,
    credential_id: str,
    public_key: str,
    sign_count: int,
) -> Passkey:
    event = audit.append(
        session,
        event=REGISTERED,
        actor=user_id,
        subject=user_id,
        details={"credential_id": credential_id, "public_key_sha256": key_digest(public_key)},
    )
    settle(session)  # the event's seq: chained now, committed with the row
    passkey = Passkey(
        user_id=user_id,
        credential_id=credential_id,
        public_key=public_key,
        sign_count=sign_count,
        audit_seq=event.seq,
    )
    session.add(passkey)
    return passkey


def vouched(session: Session, audit: AuditLog, passkey: Passkey) -> bool:
    """Whether the keyed trail registered exactly this credential and key to this person."""
    made = {
        "credential_id": passkey.credential_id,
        "public_key_sha256": key_digest(passkey.public_key),
    }
    found = vouching_event(
        session, audit, passkey.audit_seq, event=REGISTERED, subject=passkey.user_id, details=made
    )
    return found is not None


def _removed(session: Session, audit: AuditLog, user_id: str) -> set[str]:
    events = session.execute(
        select(AuditEvent).where(AuditEvent.event == REMOVED, AuditEvent.subject == user_id)  # type: ignore[arg-type]
    ).scalars()
    return {str(e.details.get("credential_id")) for e in events if audit.authentic(e)}


def passkeys_of(session: Session, audit: AuditLog, user_id: str) -> list[Passkey]:
    """This person's usable passkeys: vouched for, not removed."""
    rows = session.execute(select(Passkey).where(Passkey.user_id == user_id)).scalars()  # type: ignore[arg-type]
    removed = _removed(session, audit, user_id)
    return [p for p in rows if p.credential_id not in removed and vouched(session, audit, p)]


def remove_all(session: Session, audit: AuditLog, user_id: str, actor: str) -> int:
    """Remove every passkey of this person (a lost device; an admin's decision), audited."""
    gone = 0
    for passkey in passkeys_of(session, audit, user_id):
        audit.append(
            session,
            event=REMOVED,
            actor=actor,
            subject=user_id,
            details={"credential_id": passkey.credential_id},
        )
        session.delete(passkey)
        gone += 1
    return gone
