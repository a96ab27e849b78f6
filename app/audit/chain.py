"""Append-only, hash-chained audit events.

Each event's hash is HMAC-SHA256(key, prev_hash + canonical JSON of the event). The key
lives outside the DB (LATCHKEY_AUDIT_KEY), so someone with DB access alone can neither
alter an event nor re-chain the rest after it without `verify` noticing.

The key can change (`latchkey audit rotate-key`): an `audit_key_rotated` event, signed
with the old key, names the old and new keys' ids; every later event is signed with the
new key, and `verify` switches keys there.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from sqlalchemy.orm import ORMExecuteState, SessionTransaction
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from app.audit.hashing import GENESIS, as_record, canonical, chain_hash, hashed_fields, signed_by
from app.audit.keys import ROTATED, AuditKeyMismatch, head_event, head_mismatch, key_id, next_key
from app.db import utcnow
from app.models import AuditEvent

# Re-exported: the chain's public names, wherever they are defined.
__all__ = [
    "GENESIS",
    "ROTATED",
    "AuditKeyMismatch",
    "AuditLog",
    "VerifyResult",
    "as_record",
    "canonical",
    "chain_hash",
    "count_events",
    "hashed_fields",
    "key_id",
]
# Any constant works; it names the one advisory lock that serialises chain appends.
log = logging.getLogger(__name__)
_PG_CHAIN_LOCK = 0x4C41544348
# session.info key: events appended in the open transaction, not yet chained.
_PENDING = "latchkey_audit_pending"
# Execution option of a read of the audit table: the event names it reads (see below).
READS = "latchkey_audit_reads"


class AuditLog:
    """Writes events into the caller's transaction, so a state change and its record commit together."""

    def __init__(
        self, key: bytes, stream: TextIO | None = None, previous_keys: Sequence[bytes] = ()
    ) -> None:
        self._key = key
        # Keys the chain was signed with before rotations (LATCHKEY_AUDIT_PREVIOUS_KEYS):
        # they check old events, never sign new ones.
        self.previous_keys = tuple(previous_keys)
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
        """Add an event to the caller's transaction. It is chained (seq, prev_hash, hash)
        as the transaction commits, or first when the transaction reads the audit table.

        Chaining takes the one chain lock until commit; taking it at the end rather than
        here keeps every other append waiting only for a commit, not for whatever the
        transaction does after its event (50 approvals at once queued here).
        """
        # Round-trip details through JSON so what is hashed is exactly what is stored.
        stored_details = json.loads(json.dumps(details or {}, default=str))
        row = AuditEvent(
            at=at,
            event=event,
            actor=actor,
            request_id=request_id,
            flow=flow,
            target=target,
            subject=subject,
            details=stored_details,
            prev_hash="",
            hash="",
        )
        session.info.setdefault(_PENDING, []).append((self, row))
        return row

    def _chain(self, session: Session, rows: list[AuditEvent]) -> None:
        """Give `rows` the next places in the chain, under the chain lock (held to commit)."""
        self._lock_chain(session)
        head = head_event(session)
        # A process left running with a rotated-out (or wrong) key would sign the next
        # event with a key `verify` no longer expects: refuse, and the change rolls back.
        problem = head_mismatch(self._key, head)
        if problem is not None and self._rotated_away(session):
            raise AuditKeyMismatch(problem)
        if problem is not None:
            # A head no key of ours signed, with no rotation away from our key: a row forged
            # into the table. Refusing here would let one forged row stop every revoke, so
            # the event is written (access still ends on time) and the break is shouted
            # about; `verify` names the forged event.
            log.critical("audit chain: %s; appending anyway, run `latchkey audit verify`", problem)
        seq, prev_hash = (head.seq + 1, head.hash) if head else (1, GENESIS)
        now = utcnow()  # stamped in chain order, so `at` never runs backwards along seq
        for row in rows:
            row.seq, row.prev_hash = seq, prev_hash
            row.at = row.at or now
            row.hash = chain_hash(self._key, prev_hash, row)
            session.add(row)
            seq, prev_hash = seq + 1, row.hash
        session.flush()
        if self._stream is not None:
            for row in rows:
                self._emit_after_commit(session, row)

    def _rotated_away(self, session: Session) -> bool:
        """Whether our own key handed the chain to another key: this process is stale."""
        rotation = session.execute(
            select(AuditEvent)
            .where(AuditEvent.event == ROTATED)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        ).scalar_one_or_none()
        return (
            rotation is not None
            and signed_by(self._key, rotation.prev_hash, rotation)
            and rotation.details.get("new_key_id") != key_id(self._key)
        )

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

    def authentic(self, event: AuditEvent) -> bool:
        """Whether a key of ours vouches for this one event (its hash over its own prev_hash).

        What the worker acts on must carry this proof: a row written without the key fails.
        Keys from before a rotation count too (`previous_keys`, when the log was given them).
        """
        keys = (self._key, *self.previous_keys)
        return any(signed_by(k, event.prev_hash, event) for k in keys)

    def verify(
        self, session: Session, previous_keys: Sequence[bytes] | None = None
    ) -> VerifyResult:
        """Walk the chain in order and name the first event that does not fit.

        `previous_keys` (default: the log's own) are keys the chain was signed with before
        rotations; the walk starts with whichever key signed event 1 and switches at each
        rotation event, and must end on this log's own key.
        """
        older = self.previous_keys if previous_keys is None else previous_keys
        keys = {key_id(k): k for k in (self._key, *older)}
        key: bytes | None = None
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
            if key is None:  # the first event says which known key the chain began with
                key = next((k for k in keys.values() if signed_by(k, prev_hash, event)), self._key)
            if not signed_by(key, prev_hash, event):
                # At event 1 a forgotten LATCHKEY_AUDIT_PREVIOUS_KEYS looks the same as tampering.
                hint = "" if count else ", or the chain began under a key not given to verify"
                return VerifyResult(
                    False,
                    count,
                    event.seq,
                    f"event {event.seq} was altered (hash mismatch){hint}",
                )
            if event.event == ROTATED:
                handed = next_key(key, keys, event)
                if isinstance(handed, str):
                    return VerifyResult(False, count, event.seq, handed)
                key = handed
            expected_seq, prev_hash, count = event.seq + 1, event.hash, count + 1
        if key is not None and key != self._key:
            # Intact, but signed to the end with an old key: the rotation to this key is
            # gone (tail cut and re-written with a leaked old key), or the key is wrong.
            return VerifyResult(
                False,
                count,
                None,
                f"the chain ends under key id {key_id(key)}, not LATCHKEY_AUDIT_KEY's "
                f"({key_id(self._key)}): its rotation to the current key is missing",
            )
        return VerifyResult(True, count, None, f"{count} events, chain intact")


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None
    message: str


def settle(session: Session) -> None:
    """Chain the events the session's open transaction has appended (see AuditLog.append)."""
    pending: list[tuple[AuditLog, AuditEvent]] = session.info.pop(_PENDING, [])
    while pending:  # one run per key; a transaction nearly always has just one log
        log_, _ = pending[0]
        mine = [row for owner, row in pending if owner is log_]
        log_._chain(session, mine)
        pending = [(owner, row) for owner, row in pending if owner is not log_]


# On SQLAlchemy's Session, so every session (sqlmodel's or not) chains what it appended.
@sa_event.listens_for(OrmSession, "before_commit")
def _settle_before_commit(session: Session) -> None:
    if session.info.get(_PENDING):
        settle(session)


@sa_event.listens_for(OrmSession, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    # A rolled-back event never happened (a savepoint's rollback leaves the transaction's).
    if not previous_transaction.nested:
        session.info.pop(_PENDING, None)


@sa_event.listens_for(OrmSession, "do_orm_execute")
def _settle_before_reading(state: ORMExecuteState) -> None:
    # A transaction that reads the audit table sees its own events, in chain order. A read
    # that names the events it wants (READS) leaves the rest to be chained at commit.
    pending = state.session.info.get(_PENDING)
    if not pending or not any(m.class_ is AuditEvent for m in state.all_mappers):
        return
    names = state.execution_options.get(READS)
    if names is None or any(row.event in names for _, row in pending):
        settle(state.session)


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
