"""The audit key: its public id, the rotation from one key to the next, and the start-up
check that the configured LATCHKEY_AUDIT_KEY is the one the chain is written with.

A process started with the wrong key would sign new events that `verify` rejects, and
nobody would notice until an audit: every process refuses to start instead.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import inspect, select
from sqlmodel import Session

from app.audit.hashing import signed_by
from app.config import ConfigError, Settings
from app.db import Database
from app.models import AuditEvent

# The event that hands the chain from one key to the next. It is signed with the old key
# and its details carry both keys' ids; every later event is signed with the new key.
ROTATED = "audit_key_rotated"
MIN_KEY_LENGTH = 16
_FIX = (
    "Set LATCHKEY_AUDIT_KEY to the key the audit trail is written with; to change keys, "
    "run `latchkey audit rotate-key` (see docs/audit.md, 'Rotating the key')."
)


class AuditKeyMismatch(RuntimeError):
    """This process's audit key did not sign the chain's head: appending would break it."""


def key_id(key: bytes) -> str:
    """A public fingerprint of an audit key: names it in events and messages, reveals nothing."""
    return hmac.new(key, b"latchkey-audit-key-id", hashlib.sha256).hexdigest()[:16]


def previous_keys(settings: Settings) -> list[bytes]:
    """LATCHKEY_AUDIT_PREVIOUS_KEYS: the keys the chain was signed with before rotations."""
    raw = settings.audit_previous_keys.get_secret_value()
    return [item.strip().encode() for item in raw.split(",") if item.strip()]


def head_event(session: Session) -> AuditEvent | None:
    """The newest event of the chain (None when it is empty)."""
    return session.execute(
        select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)  # type: ignore[attr-defined]
    ).scalar_one_or_none()


def head_mismatch(key: bytes, head: AuditEvent | None) -> str | None:
    """Why `key` may not extend a chain ending in `head` (None: it may).

    It may when the head is the rotation event that hands the chain to `key`, or any
    other event signed with `key`. An empty chain takes any key.
    """
    if head is None:
        return None
    if head.event == ROTATED:  # signed with the old key, which may no longer write
        new_id = head.details.get("new_key_id")
        if new_id == key_id(key):
            return None
        return (
            f"the audit key was rotated at event {head.seq} to key id {new_id}, and "
            f"LATCHKEY_AUDIT_KEY is key id {key_id(key)}"
        )
    if signed_by(key, head.prev_hash, head):
        return None
    return (
        f"the newest audit event ({head.seq}, {head.event}) was not signed with "
        f"LATCHKEY_AUDIT_KEY (key id {key_id(key)})"
    )


def next_key(key: bytes, known: dict[str, bytes], event: AuditEvent) -> bytes | str:
    """The key that signs the events after a rotation event, or why the walk stops."""
    old_id, new_id = event.details.get("old_key_id"), event.details.get("new_key_id")
    if old_id != key_id(key):
        return (
            f"event {event.seq} rotates away from key id {old_id}, but the chain was "
            f"signed with key id {key_id(key)}"
        )
    if new_id not in known:
        return (
            f"event {event.seq} rotated the audit key to key id {new_id}, which is neither "
            "LATCHKEY_AUDIT_KEY nor in LATCHKEY_AUDIT_PREVIOUS_KEYS"
        )
    return known[new_id]


def check_key(session: Session, key: bytes) -> str | None:
    """Why `key` is not the chain's current key (None when it is, or the chain is empty)."""
    problem = head_mismatch(key, head_event(session))
    if problem is None:
        return None
    return (
        f"LATCHKEY_AUDIT_KEY does not match the audit trail: {problem}. {_FIX} "
        "If the key is right, the event itself may have been altered: run `latchkey audit verify`."
    )


def require_matching_key(database: Database, key: bytes) -> None:
    """Fail closed at start-up: a wrong audit key or an unmigrated database stops the process."""
    if not inspect(database.engine).has_table(AuditEvent.__tablename__):
        raise ConfigError(
            "database not migrated: the audit_event table does not exist at DATABASE_URL; "
            "run `latchkey migrate`"
        )
    with database.session() as session:
        problem = check_key(session, key)
    if problem is not None:
        raise ConfigError(problem)
