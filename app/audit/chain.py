"""Append-only, hash-chained audit events.

Each event's hash is HMAC-SHA256(key, prev_hash + canonical JSON of the event). The key
lives outside the DB (LATCHKEY_AUDIT_KEY), so someone with DB access alone can neither
alter an event nor re-chain the rest after it without `verify` noticing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from sqlmodel import Session

from app.db import utcnow
from app.models import AuditEvent

GENESIS = "0" * 64
# Any constant works; it names the one advisory lock that serialises chain appends.
_PG_CHAIN_LOCK = 0x4C41544348


def hashed_fields(event: AuditEvent) -> dict[str, Any]:
    """Every field but the hashes, as plain JSON types: what the chain covers."""
    return {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "event": event.event,
        "actor": event.actor,
        "request_id": str(event.request_id) if event.request_id else None,
        "flow": event.flow,
        "target": event.target,
        "subject": event.subject,
        "details": event.details,
    }


def as_record(event: AuditEvent) -> dict[str, Any]:
    """One event as plain JSON types, the shape of a JSON line and of a webhook delivery:
    the fields the chain covers, then the chain's own two hashes."""
    return {**hashed_fields(event), "prev_hash": event.prev_hash, "hash": event.hash}


def canonical(event: AuditEvent) -> str:
    """The exact bytes that are hashed: the hashed fields, sorted keys, UTC ISO time."""
    body = hashed_fields(event)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(key: bytes, prev_hash: str, event: AuditEvent) -> str:
    return hmac.new(key, (prev_hash + canonical(event)).encode(), hashlib.sha256).hexdigest()


class AuditLog:
    """Writes events into the caller's transaction, so a state change and its record commit together."""

    def __init__(self, key: bytes, stream: TextIO | None = None) -> None:
        self._key = key
        # Where committed events are also written as JSON lines (LATCHKEY_AUDIT_STDOUT).
        self._stream = stream

    def append(
        self,
        session: Session,
        *,
        event: str,
        actor: str,
        request_id: uuid.UUID | None = None,
        flow: str | None = None,
        target: str | None = None,
        subject: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEvent:
        self._lock_chain(session)
        last = session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        ).first()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
        # Round-trip details through JSON so what is hashed is exactly what is stored.
        stored_details = json.loads(json.dumps(details or {}, default=str))
        row = AuditEvent(
            seq=seq,
            at=at or utcnow(),
            event=event,
            actor=actor,
            request_id=request_id,
            flow=flow,
            target=target,
            subject=subject,
            details=stored_details,
            prev_hash=prev_hash,
            hash="",
        )
        row.hash = chain_hash(self._key, prev_hash, row)
        session.add(row)
        session.flush()
        if self._stream is not None:
            self._emit_after_commit(session, row)
        return row

    def _emit_after_commit(self, session: Session, row: AuditEvent) -> None:
        # Written only once the transaction commits: a rolled-back event never happened.
        pending = session.info.setdefault("latchkey_audit_lines", [])
        if not pending and not session.info.get("latchkey_audit_hooked"):
            session.info["latchkey_audit_hooked"] = True
            sa_event.listen(session, "after_commit", self._flush_lines)
            sa_event.listen(
                session, "after_rollback", lambda s: s.info.pop("latchkey_audit_lines", None)
            )
        pending.append(
            json.dumps({"latchkey_audit": as_record(row)}, ensure_ascii=False, sort_keys=True)
        )

    def _flush_lines(self, session: Session) -> None:
        assert self._stream is not None
        for line in session.info.pop("latchkey_audit_lines", []):
            self._stream.write(line + "\n")
        self._stream.flush()

    @staticmethod
    def _lock_chain(session: Session) -> None:
        # On SQLite every transaction already holds the write lock (BEGIN IMMEDIATE, see
        # app.db); PostgreSQL needs an explicit lock, released at commit.
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CHAIN_LOCK})

    def verify(self, session: Session) -> VerifyResult:
        """Walk the chain in order and name the first event that does not fit."""
        expected_seq, prev_hash, count = 1, GENESIS, 0
        for event in _stream(session):
            if event.seq != expected_seq:
                return VerifyResult(
                    False,
                    count,
                    event.seq,
                    f"event {expected_seq} is missing (next is {event.seq}): deleted",
                )
            if event.prev_hash != prev_hash:
                return VerifyResult(
                    False,
                    count,
                    event.seq,
                    f"event {event.seq} does not link to event {event.seq - 1}: "
                    "inserted or re-chained",
                )
            if not hmac.compare_digest(event.hash, chain_hash(self._key, prev_hash, event)):
                return VerifyResult(
                    False, count, event.seq, f"event {event.seq} was altered (hash mismatch)"
                )
            expected_seq, prev_hash, count = event.seq + 1, event.hash, count + 1
        return VerifyResult(True, count, None, f"{count} events, chain intact")


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None
    message: str


def _stream(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    """Events in order, a batch at a time, so verifying a long history stays in bounded memory."""
    after = 0
    while True:
        rows = (
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def count_events(session: Session) -> int:
    return session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
