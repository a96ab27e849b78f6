"""The one way a request changes state: compare-and-set on (id, status), audited in the
same transaction, and a result that says whether this caller won."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from app.audit import AuditLog
from app.db import utcnow
from app.flows.policy import (
    Quorum,
)
from app.models import AccessRequest, RequestStatus

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
